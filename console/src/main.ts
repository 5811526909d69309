// The console: hash routes, sign-in state, and the pages.
import "./style.css";
import { useToken } from "./api";
import * as auth from "./auth";
import { h } from "./dom";
import { createPage, devicePage, fleetPage, sharePage } from "./pages";
import { signInPage } from "./signin";

let signedIn = false;
let stopPage: (() => void) | void;

function nav(email: string | null): void {
  const el = document.getElementById("nav")!;
  if (!email) return el.replaceChildren();
  el.replaceChildren(
    h("a", { href: "#/" }, "Fleet"),
    h("a", { href: "#/new" }, "Create"),
    h("span", { class: "who" }, email),
    h("button", { type: "button", class: "link", onclick: () => auth.logOut() }, "Sign out"),
  );
}

function route(): void {
  if (stopPage) stopPage();
  stopPage = undefined;
  document.getElementById("flash")!.replaceChildren();
  const hash = location.hash.replace(/^#/, "") || "/";
  if (!signedIn) return signInPage();
  const parts = hash.split("/").filter(Boolean);
  if (parts[0] === "device" && parts[1]) stopPage = devicePage(parts[1]);
  else if (parts[0] === "new") createPage();
  else if (parts[0] === "share" && parts[1] && parts[2]) sharePage(parts[1], parts[2]);
  else stopPage = fleetPage();
}

useToken(auth.idToken);
window.addEventListener("hashchange", route);
auth
  .start((user) => {
    signedIn = user !== null;
    nav(user?.email ?? null);
    route();
  })
  .catch((err) => {
    document.getElementById("app")!.replaceChildren(h("p", { class: "flash error" }, `The console could not start: ${err}`));
  });
