// Fleet, create, device and sharing pages.
import { call, download, type Json } from "./api";
import { HistoryChart } from "./chart";
import { busy, errorText, field, flash, h, loading, mount, showError, when } from "./dom";
import { deviceAlarms } from "./alarms";
import { watchCommand, watchFolder, watchLatest, watchStatus } from "./live";

const q = encodeURIComponent;

function dot(status: string): HTMLElement {
  return h("span", { class: `dot ${status}`, title: status, "aria-label": `status ${status}` });
}

export function fleetPage(): () => void {
  const counts = h("section", { class: "counts", "aria-label": "Fleet statistics" }, loading());
  const folders = h("section", { "aria-labelledby": "folders-title" }, h("h2", { id: "folders-title" }, "Folders"), loading());
  const devices = h("section", { "aria-labelledby": "devices-title" });
  const status = h("select", { name: "status" }, ...["", "online", "offline", "error"].map((s) => h("option", { value: s }, s || "any status"))) as HTMLSelectElement;
  const product = h("select", { name: "product" }, h("option", { value: "" }, "any product")) as HTMLSelectElement;
  const text = h("input", { type: "search", name: "q", placeholder: "name or serial" }) as HTMLInputElement;
  const list = h("div", { id: "device-list" }, loading());
  let folderId = "";
  const filters = h("form", { class: "filters", onsubmit: (e: Event) => (e.preventDefault(), loadDevices()) },
    field("Status", status), field("Product", product), field("Search", text),
    h("button", { type: "submit" }, "Filter"));
  devices.append(h("h2", { id: "devices-title" }, "Devices"), filters, list);
  mount(h("h1", {}, "Fleet"), counts, folders, devices);

  async function loadStats(): Promise<void> {
    const params = folderId ? `?folder_id=${q(folderId)}` : "";
    const s = await call(`GET`, `/stats${params}`);
    const rpm = s.readings_per_minute.at(-1)?.readings ?? 0;
    const alarms = Object.values(s.active_alarms_by_severity as Record<string, number>).reduce((a, b) => a + b, 0);
    counts.replaceChildren(
      ...[["Devices", s.devices_total], ["Online", s.devices_by_status.online], ["Offline", s.devices_by_status.offline],
        ["Error", s.devices_by_status.error], ["Readings this minute", rpm], ["Active alarms", alarms]]
        .map(([label, n]) => h(label === "Active alarms" ? "a" : "div", { class: "count", "data-count": String(label).toLowerCase(), href: label === "Active alarms" ? "#/alarms" : undefined },
          h("strong", {}, String(n)), h("span", {}, String(label)))),
      h("p", { class: "muted" }, `Last seen: ${when(s.last_seen_at)}`),
    );
  }
  async function loadFolders(): Promise<void> {
    const page = await call(`GET`, `/folders?limit=200`);
    const items = page.items as Json[];
    const byParent = new Map<string, Json[]>();
    for (const f of items) byParent.set(f.parent_id ?? "", [...(byParent.get(f.parent_id ?? "") ?? []), f]);
    const ids = new Set(items.map((f) => f.id));
    const tree = (parent: string): HTMLElement =>
      h("ul", { class: "tree" }, ...(byParent.get(parent) ?? []).map((f) =>
        h("li", {}, h("button", { type: "button", class: `link ${f.id === folderId ? "current" : ""}`, onclick: () => { folderId = f.id === folderId ? "" : f.id; refresh(); } }, f.name),
          " ", h("a", { href: `#/share/folders/${f.id}`, class: "small" }, "share"), tree(f.id))));
    const roots = items.filter((f) => !f.parent_id || !ids.has(f.parent_id)).map((f) => f.parent_id ?? "");
    rootFolders = items.filter((f) => !f.parent_id || !ids.has(f.parent_id)).map((f) => f.id);
    folders.replaceChildren(h("h2", { id: "folders-title" }, "Folders"),
      items.length ? h("div", {}, ...[...new Set(roots)].map(tree)) : h("p", { class: "muted" }, "No folders yet: create one."));
  }
  async function loadProducts(): Promise<void> {
    const page = await call(`GET`, `/products?limit=200`);
    for (const p of page.items as Json[]) product.append(h("option", { value: p.id }, p.name));
  }
  // Live status dots: `folder.devices` for the chosen folder (or each top folder), and
  // `device.status` for shown devices outside every folder (the socket allows 50).
  const watching = new Map<string, () => void>();
  const setDot = (deviceId: string, st: string) => {
    const old = list.querySelector(`li[data-device="${CSS.escape(deviceId)}"] .dot`);
    if (old) old.replaceWith(dot(st));
  };
  // While the socket is down every watcher polls: one list reload at most every 5 s for all.
  let lastReload = 0;
  let reloadTimer: number | undefined;
  const quietReload = async () => {
    if (reloadTimer !== undefined) return;
    const wait = Math.max(0, lastReload + 5000 - Date.now());
    reloadTimer = window.setTimeout(() => {
      reloadTimer = undefined;
      lastReload = Date.now();
      loadDevices(true).catch(() => undefined);
    }, wait);
  };
  function follow(items: Json[], folderIds: string[]): void {
    const want = new Map<string, () => () => void>();
    for (const id of (folderId ? [folderId] : folderIds).slice(0, 20)) want.set(`f:${id}`, () => watchFolder(id, setDot, quietReload));
    if (!folderId) {
      for (const d of items.filter((x) => !x.folder_id).slice(0, 25)) {
        want.set(`d:${d.id}`, () => watchStatus(d.id, (st) => setDot(d.id, st), quietReload));
      }
    }
    for (const [key, stop] of watching) if (!want.has(key)) { stop(); watching.delete(key); }
    for (const [key, start] of want) if (!watching.has(key)) watching.set(key, start());
  }
  let rootFolders: string[] = [];
  async function loadDevices(quiet = false): Promise<void> {
    lastReload = Date.now();
    if (!quiet) list.replaceChildren(loading());
    const params = new URLSearchParams({ limit: "100" });
    if (folderId) params.set("folder_id", folderId);
    if (status.value) params.set("status", status.value);
    if (product.value) params.set("product_id", product.value);
    if (text.value) params.set("q", text.value);
    try {
      const page = await call(`GET`, `/devices?${params}`);
      const items = page.items as Json[];
      list.replaceChildren(items.length
        ? h("ul", { class: "devices" }, ...items.map((d) => h("li", { "data-device": d.id }, dot(d.status),
            h("a", { href: `#/device/${d.id}` }, d.name), h("span", { class: "muted" }, ` ${d.serial} · last seen ${when(d.last_seen_at)}`))))
        : h("p", { class: "muted" }, "No devices match."));
      follow(items, rootFolders);
    } catch (err) {
      list.replaceChildren(h("p", { class: "flash error" }, errorText(err)));
    }
  }
  function refresh(): void {
    Promise.all([loadStats(), loadFolders().then(() => loadDevices())]).catch(showError);
  }
  loadProducts().catch(showError);
  refresh();
  const timer = window.setInterval(() => { loadStats().catch(() => undefined); }, 10_000);
  return () => {
    window.clearInterval(timer);
    window.clearTimeout(reloadTimer);
    for (const stop of watching.values()) stop();
  };
}

export function createPage(): void {
  const folderSelects: HTMLSelectElement[] = [];
  const folderSelect = (name: string) => {
    const s = h("select", { name }, h("option", { value: "" }, "(top level)")) as HTMLSelectElement;
    folderSelects.push(s);
    return s;
  };
  const productSelect = h("select", { name: "product_id", required: true }) as HTMLSelectElement;
  const reload = async () => {
    const [folders, products] = await Promise.all([call(`GET`, `/folders?limit=200`), call(`GET`, `/products?limit=200`)]);
    for (const s of folderSelects) {
      const keep = s.value;
      s.replaceChildren(h("option", { value: "" }, "(top level)"), ...(folders.items as Json[]).map((f) => h("option", { value: f.id }, f.name)));
      s.value = keep;
    }
    productSelect.replaceChildren(...(products.items as Json[]).map((p) => h("option", { value: p.id }, p.name)));
  };

  const folderName = h("input", { name: "folder_name", required: true, maxlength: 100 }) as HTMLInputElement;
  const folderParent = folderSelect("parent_id");
  const folderForm = h("form", { class: "card", "aria-labelledby": "new-folder" },
    h("h2", { id: "new-folder" }, "New folder"), field("Name", folderName), field("Parent", folderParent),
    h("button", { type: "submit", id: "create-folder" }, "Create folder"));
  folderForm.addEventListener("submit", async (e) => {
    e.preventDefault();
    await busy(folderForm.querySelector("button"), async () => {
      await call("POST", "/folders", { name: folderName.value, parent_id: folderParent.value || null });
      flash(`Folder ${folderName.value} created.`, "ok");
      folderName.value = "";
      await reload();
    });
  });

  const productName = h("input", { name: "product_name", required: true }) as HTMLInputElement;
  const sku = h("input", { name: "sku", required: true }) as HTMLInputElement;
  const productFolder = folderSelect("product_folder");
  const metrics = h("textarea", { name: "metrics", rows: 3, placeholder: "temperature,C,-40,85" }, "temperature,C,-40,85") as HTMLTextAreaElement;
  const commands = h("textarea", { name: "commands", rows: 4 }, JSON.stringify([{ name: "set_interval", params: { type: "object", properties: { seconds: { type: "integer", minimum: 1 } }, required: ["seconds"] }, result_expected: true }], null, 1)) as HTMLTextAreaElement;
  const productForm = h("form", { class: "card", "aria-labelledby": "new-product" },
    h("h2", { id: "new-product" }, "New product"), field("Name", productName), field("SKU", sku), field("Folder", productFolder),
    field("Telemetry: one metric a line (name,unit,min,max)", metrics), field("Commands (JSON list)", commands),
    h("button", { type: "submit", id: "create-product" }, "Create product"));
  productForm.addEventListener("submit", async (e) => {
    e.preventDefault();
    await busy(productForm.querySelector("button"), async () => {
      const spec = metrics.value.split("\n").map((l) => l.trim()).filter(Boolean).map((l) => {
        const [name, unit, min, max] = l.split(",").map((x) => x.trim());
        return { name, unit: unit || null, min: min ? Number(min) : null, max: max ? Number(max) : null };
      });
      let cmds: unknown = [];
      try { cmds = commands.value.trim() ? JSON.parse(commands.value) : []; } catch { throw new Error("Commands must be a JSON list."); }
      await call("POST", "/products", { name: productName.value, sku: sku.value, folder_id: productFolder.value || null, telemetry: { metrics: spec }, commands: cmds });
      flash(`Product ${productName.value} created.`, "ok");
      await reload();
    });
  });

  const deviceName = h("input", { name: "device_name", required: true }) as HTMLInputElement;
  const serial = h("input", { name: "serial", required: true }) as HTMLInputElement;
  const deviceFolder = folderSelect("device_folder");
  const keyBox = h("div", { id: "device-key-box" });
  const deviceForm = h("form", { class: "card", "aria-labelledby": "new-device" },
    h("h2", { id: "new-device" }, "New device"), field("Name", deviceName), field("Serial", serial),
    field("Product", productSelect), field("Folder", deviceFolder),
    h("button", { type: "submit", id: "create-device" }, "Create device"), keyBox);
  deviceForm.addEventListener("submit", async (e) => {
    e.preventDefault();
    await busy(deviceForm.querySelector("button"), async () => {
      const d = await call("POST", "/devices", { name: deviceName.value, serial: serial.value, product_id: productSelect.value, folder_id: deviceFolder.value || null });
      const key = h("code", { id: "device-key" }, d.key);
      const copy = h("button", { type: "button", id: "copy-key", onclick: async () => {
        await navigator.clipboard?.writeText(d.key).catch(() => undefined);
        copy.textContent = "Copied";
      } }, "Copy key");
      keyBox.replaceChildren(h("div", { class: "key", role: "alert" },
        h("p", { class: "warning" }, "This key is shown once. Copy it now and store it on the device: it cannot be shown again (rotate it to get a new one)."),
        key, " ", copy, " ", h("a", { href: `#/device/${d.id}`, id: "open-device" }, "Open device")));
    });
  });
  mount(h("h1", {}, "Create"), h("div", { class: "grid" }, folderForm, productForm, deviceForm));
  reload().catch(showError);
}

export function devicePage(deviceId: string): () => void {
  const title = h("h1", {}, "Device");
  const latest = h("section", { "aria-labelledby": "latest-title" }, h("h2", { id: "latest-title" }, "Latest values"), h("div", { id: "latest" }, loading()));
  const heartbeat = h("section", { "aria-labelledby": "hb-title" }, h("h2", { id: "hb-title" }, "Heartbeat"), loading());
  const chartBox = h("div", { id: "chart" });
  const tz = h("select", { name: "tz" }, ...["UTC", Intl.DateTimeFormat().resolvedOptions().timeZone].filter((v, i, a) => a.indexOf(v) === i).map((z) => h("option", { value: z }, z))) as HTMLSelectElement;
  const exportButton = h("button", { type: "button", class: "secondary" }, "Export CSV (24 h)") as HTMLButtonElement;
  const history = h("section", { "aria-labelledby": "hist-title" }, h("h2", { id: "hist-title" }, "History"),
    h("div", { class: "row" }, field("Time zone", tz), exportButton), chartBox);
  const commands = h("section", { "aria-labelledby": "cmd-title" }, h("h2", { id: "cmd-title" }, "Commands"));
  const alarms = h("section", { "aria-labelledby": "alarms-title" }, h("h2", { id: "alarms-title" }, "Alarms"));
  mount(title, latest, alarms, history, heartbeat, commands,
    h("p", {}, h("a", { href: `#/share/devices/${deviceId}` }, "Share this device")));
  const stops: (() => void)[] = [];
  const chart = new HistoryChart(chartBox, deviceId, () => tz.value);
  tz.addEventListener("change", () => chart.reload());
  exportButton.addEventListener("click", () => busy(exportButton, () => {
    const start = new Date(Date.now() - 86_400_000).toISOString();
    return download(`/devices/${deviceId}/readings/export?format=csv&start=${q(start)}`, `${deviceId}.csv`);
  }));

  let deviceName = "";
  const showStatus = (st: string) => {
    if (deviceName) title.replaceChildren(dot(st), ` ${deviceName}`);
    title.dataset.status = st;
  };
  let hbBusy = false;
  const loadHeartbeat = async () => {
    if (hbBusy) return;
    hbBusy = true;
    try {
      const status = await call("GET", `/devices/${deviceId}/status`);
      showStatus(status.status ?? "unknown");
      heartbeat.replaceChildren(h("h2", { id: "hb-title" }, "Heartbeat"),
        h("dl", { id: "heartbeat" }, h("dt", {}, "Status"), h("dd", { "data-field": "status" }, status.status ?? "unknown"),
          h("dt", {}, "Reported"), h("dd", { "data-field": "reported" }, status.reported_status ?? "—"),
          h("dt", {}, "Last seen"), h("dd", { "data-field": "last-seen" }, when(status.last_seen_at)),
          h("dt", {}, "Detail"), h("dd", { "data-field": "detail" }, h("pre", {}, JSON.stringify(status.detail ?? {}, null, 1)))),
        h("p", { class: "muted small" }, `Checked ${new Date().toLocaleTimeString()}`));
    } finally {
      hbBusy = false;
    }
  };
  (async () => {
    const device = await call("GET", `/devices/${deviceId}`);
    deviceName = device.name;
    showStatus(title.dataset.status ?? device.status);
    const product = await call("GET", `/products/${device.product_id}`);
    commandForm(commands, deviceId, product.commands as Json[], stops);
  })().catch(showError);
  loadHeartbeat().catch(showError);
  // The status follows `device.status` events; the heartbeat detail (battery, reported status)
  // has no event of its own, so it is fetched on each status change, after new readings and
  // every 10 s.
  stops.push(watchStatus(deviceId, (st) => { showStatus(st); loadHeartbeat().catch(() => undefined); }, loadHeartbeat));
  const hbTimer = window.setInterval(() => { if (!document.hidden) loadHeartbeat().catch(() => undefined); }, 10_000);
  stops.push(() => window.clearInterval(hbTimer));
  stops.push(deviceAlarms(alarms, deviceId));

  let lastTs: string | null | undefined;
  stops.push(watchLatest(deviceId, (l) => {
    const box = document.getElementById("latest");
    if (!box) return;
    const entries = Object.entries(l.metrics as Record<string, Json>);
    box.replaceChildren(entries.length
      ? h("dl", { class: "latest" }, ...entries.flatMap(([name, v]) => [h("dt", {}, name), h("dd", { "data-metric": name }, String(v.value), h("small", {}, ` at ${when(v.ts)}`))]))
      : h("p", { class: "muted" }, "No readings yet."));
    if (lastTs !== undefined && l.ts !== lastTs) {
      chart.reload();
      loadHeartbeat().catch(() => undefined);
    }
    lastTs = l.ts ?? null;
  }, showError));
  return () => { for (const stop of stops) stop(); chart.destroy(); };
}

function commandForm(section: HTMLElement, deviceId: string, specs: Json[], stops: (() => void)[]): void {
  if (!specs?.length) {
    section.append(h("p", { class: "muted" }, "This product declares no commands."));
    return;
  }
  const select = h("select", { name: "command" }, ...specs.map((s) => h("option", { value: s.name }, s.name))) as HTMLSelectElement;
  const paramsBox = h("div", { class: "params" });
  const state = h("p", { id: "command-state", role: "status" });
  const render = () => {
    const spec = specs.find((s) => s.name === select.value)!;
    const props = (spec.params?.properties ?? {}) as Record<string, Json>;
    const required = new Set<string>(spec.params?.required ?? []);
    paramsBox.replaceChildren(...Object.entries(props).map(([name, schema]) => {
      const type = schema.type === "integer" || schema.type === "number" ? "number" : schema.type === "boolean" ? "checkbox" : "text";
      const input = h("input", { name: `param-${name}`, type, required: required.has(name) && type !== "checkbox", min: schema.minimum, max: schema.maximum,
        step: schema.type === "integer" ? 1 : type === "number" ? "any" : undefined, "data-type": schema.type }) as HTMLInputElement;
      return field(`${name}${schema.description ? ` (${schema.description})` : ""}`, input);
    }));
  };
  select.addEventListener("change", render);
  render();
  const form = h("form", { class: "card" }, field("Command", select), paramsBox, h("button", { type: "submit", id: "send-command" }, "Send"), state);
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    await busy(form.querySelector("button"), async () => {
      const params: Json = {};
      for (const input of paramsBox.querySelectorAll("input")) {
        const name = input.name.replace(/^param-/, "");
        const type = input.dataset.type;
        if (type === "boolean") params[name] = input.checked;
        else if (input.value === "") continue;
        else params[name] = type === "integer" || type === "number" ? Number(input.value) : input.value;
      }
      const cmd = await call("POST", `/devices/${deviceId}/commands`, { name: select.value, params });
      state.textContent = `${cmd.name}: ${cmd.state}`;
      state.dataset.state = cmd.state;
      stops.push(watchCommand(deviceId, cmd.id, (c) => { state.textContent = `${c.name}: ${c.state}`; state.dataset.state = c.state; }));
    });
  });
  section.append(form);
}

export function sharePage(kind: string, id: string): void {
  const list = h("div", {}, loading());
  const email = h("input", { type: "email", name: "share_email", required: true }) as HTMLInputElement;
  const role = h("select", { name: "role" }, ...["viewer", "editor", "owner"].map((r) => h("option", { value: r }, r))) as HTMLSelectElement;
  const form = h("form", { class: "card", "aria-labelledby": "share-title" }, h("h1", { id: "share-title" }, `Share this ${kind.replace(/s$/, "")}`),
    field("Email", email), field("Role", role), h("button", { type: "submit", id: "share" }, "Share"), list);
  const load = async () => {
    const shares = await call<Json[] | Json>("GET", `/${kind}/${id}/permissions`);
    const items = (Array.isArray(shares) ? shares : shares.items) as Json[];
    list.replaceChildren(h("ul", {}, ...items.map((s) => h("li", {}, `${s.email ?? s.user_id} — ${s.role}`, s.status === "pending" ? h("em", {}, " (invite pending)") : "",
      " ", h("button", { type: "button", class: "link", onclick: async () => { await busy(null, () => call("DELETE", `/${kind}/${id}/permissions/${q(s.user_id ?? s.email)}`)); await load(); } }, "remove")))));
  };
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    await busy(form.querySelector("button"), async () => {
      await call("PUT", `/${kind}/${id}/permissions/${q(email.value)}`, { role: role.value });
      flash(`Shared with ${email.value}.`, "ok");
      await load();
    });
  });
  mount(form);
  load().catch(showError);
}

export function adminPage(): void {
  const list = h("div", {}, loading());
  mount(h("h1", {}, "Users"), list);
  const load = async () => {
    const page = await call("GET", `/users?limit=200`);
    list.replaceChildren(h("table", { class: "users" },
      h("thead", {}, h("tr", {}, h("th", {}, "Email"), h("th", {}, "Roles"), h("th", {}, "Disabled"), h("th", {}, "Actions"))),
      h("tbody", {}, ...(page.items as Json[]).map((u) => {
        const admin = (u.roles as string[]).includes("admin");
        const act = (label: string, change: Json) => h("button", { type: "button", class: "secondary", onclick: async (e: Event) => {
          await busy(e.currentTarget as HTMLButtonElement, () => call("PATCH", `/users/${q(u.uid)}`, change));
          await load();
        } }, label);
        return h("tr", {}, h("td", {}, u.email ?? u.uid), h("td", {}, (u.roles as string[]).join(", ") || "—"), h("td", {}, u.disabled ? "yes" : "no"),
          h("td", {}, act(u.disabled ? "Enable" : "Disable", { disabled: !u.disabled }), " ", act(admin ? "Remove admin" : "Make admin", { admin: !admin })));
      }))));
  };
  load().catch((err) => list.replaceChildren(h("p", { class: "flash error" }, errorText(err))));
}
