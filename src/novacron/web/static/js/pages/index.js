// Every area's pages, registered on import. A new area adds one line here (and its module).
import './overview.js';
import './vms.js';
import './vm_detail.js';
import './catalog.js';
import './networks.js';
import './routers.js';
import './security_groups.js';
import './quota.js';
import './backups.js';
import './dr.js';
import './hosts.js';
import './host_metrics.js';
import './monitoring_overview.js';
import './dashboards.js';
import './tasks.js';
import './admin.js';
