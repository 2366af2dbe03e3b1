// The page registry: each area's module calls registerPage() for its pages; the shell builds the
// navigation and the router from it. Adding an area is a new module under pages/ plus one import
// line in pages/index.js (see docs/architecture.md, "Web dashboard").

const pages = [];

/** Navigation sections, in the order they appear. An area may add its own with addSection(). */
export const sections = ['Compute', 'Network', 'Backup', 'Usage', 'Infrastructure', 'Administration'];

export function addSection(name, { before } = {}) {
  if (sections.includes(name)) return;
  const at = before ? sections.indexOf(before) : -1;
  if (at >= 0) sections.splice(at, 0, name); else sections.push(name);
}

/**
 * Register a page.
 *   path:       '/vms/:id' (a hash route: the URL is '#/vms/<id>')
 *   title:      shown in the navigation, the heading and the window title
 *   section:    a navigation section (one of `sections`), or null to leave it out of the menu
 *   permission: the API permission needed to see it in the menu ('vm:read'); the API decides anyway
 *   order:      position within its section (smaller first)
 *   render:     async (ctx) => void, where ctx = {main, params, query, me, signal, onCleanup, navigate}
 */
export function registerPage({ path, title, section = null, permission = null, order = 100, render }) {
  if (!path.startsWith('/') || typeof render !== 'function') throw new Error(`bad page ${path}`);
  const names = [];
  const pattern = new RegExp(`^${path.replace(/:([a-z_]+)/g, (_, n) => { names.push(n); return '([^/]+)'; })}$`);
  pages.push({ path, title, section, permission, order, render, pattern, names });
}

export function match(path) {
  // fixed paths first, so '/vms/new' wins over '/vms/:id' whatever the import order
  const ordered = [...pages].sort((a, b) => a.names.length - b.names.length);
  for (const page of ordered) {
    const m = page.pattern.exec(path);
    if (m) {
      const params = Object.fromEntries(page.names.map((n, i) => [n, decodeURIComponent(m[i + 1])]));
      return { page, params };
    }
  }
  return null;
}

/** The menu for a user holding `permissions`: [{section, pages: [...]}]. */
export function navFor(permissions) {
  return sections.map((section) => ({
    section,
    pages: pages
      .filter((p) => p.section === section && (!p.permission || permissions.includes(p.permission)))
      .sort((a, b) => a.order - b.order),
  })).filter((s) => s.pages.length);
}
