// The console: hash routes, sign-in state, and the pages.
import "./style.css";
import { useToken } from "./api";
import * as auth from "./auth";
import { h } from "./dom";
import { call } from "./api";
import { alarmsPage } from "./alarms";
import { live } from "./live";
import { adminPage, createPage, devicePage, fleetPage, sharePage } from "./pages";
import { signInPage } from "./signin";

let signedIn = false;
let stopPage: (() => void) | void;

async function nav(email: string | null): Promise<void> {
  const el = document.getElementById("nav")!;
  if (!email) return el.replaceChildren();
  const me = await call("GET", "/auth/me").catch(() => ({ is_admin: false }));
  el.replaceChildren(
    h("a", { href: "#/" }, "Fleet"),
    h("a", { href: "#/alarms" }, "Alarms"),
    h("a", { href: "#/new" }, "Create"),
    me.is_admin ? h("a", { href: "#/admin" }, "Users") : "",
    h("span", { class: "who" }, email),
    h("button", { type: "button", class: "link", onclick: () => auth.logOut() }, "Sign out"),
  );
}

function route(): void {
  if (stopPage) stopPage();
  stopPage = undefined;
  document.getElementById("flash")!.replaceChildren();
  const [hash, search] = (location.hash.replace(/^#/, "") || "/").split("?");
  if (!signedIn) return signInPage();
  const parts = hash.split("/").filter(Boolean);
  if (parts[0] === "device" && parts[1]) stopPage = devicePage(parts[1]);
  else if (parts[0] === "alarms") stopPage = alarmsPage(new URLSearchParams(search ?? ""));
  else if (parts[0] === "new") createPage();
  else if (parts[0] === "admin") adminPage();
  else if (parts[0] === "share" && parts[1] && parts[2]) sharePage(parts[1], parts[2]);
  else stopPage = fleetPage();
}

useToken(() => auth.idToken());
live.useToken(auth.idToken);
window.addEventListener("hashchange", route);
auth
  .start((user) => {
    signedIn = user !== null;
    if (!signedIn) live.close();
    nav(user?.email ?? null).catch(() => undefined);
    route();
  })
  .catch((err) => {
    document.getElementById("app")!.replaceChildren(h("p", { class: "flash error" }, `The console could not start: ${err}`));
  });
