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
import './tasks.js';
import './traces.js';
import './admin.js';
import './alerts.js';
import './alert_rules.js';
