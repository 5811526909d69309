// Sign in and sign up with email and password.
import * as auth from "./auth";
import { field, flash, h, mount } from "./dom";

export function signInPage(): void {
  const email = h("input", { type: "email", name: "email", autocomplete: "username", required: true }) as HTMLInputElement;
  const password = h("input", { type: "password", name: "password", autocomplete: "current-password", required: true, minlength: 6 }) as HTMLInputElement;
  const go = async (ev: Event, action: "in" | "up") => {
    ev.preventDefault();
    if (!email.reportValidity() || !password.reportValidity()) return;
    const button = ev.currentTarget as HTMLButtonElement;
    button.disabled = true;
    button.setAttribute("aria-busy", "true");
    try {
      if (action === "in") await auth.signIn(email.value, password.value);
      else await auth.signUp(email.value, password.value);
    } catch (err) {
      flash(auth.authMessage(err));
    } finally {
      button.disabled = false;
      button.removeAttribute("aria-busy");
    }
  };
  mount(
    h(
      "form",
      { class: "card narrow", "aria-labelledby": "signin-title", onsubmit: (ev: Event) => go(ev, "in") },
      h("h1", { id: "signin-title" }, "Sign in"),
      field("Email", email),
      field("Password", password),
      h(
        "div",
        { class: "row" },
        h("button", { type: "submit", id: "sign-in", onclick: (ev: Event) => go(ev, "in") }, "Sign in"),
        h("button", { type: "button", id: "sign-up", class: "secondary", onclick: (ev: Event) => go(ev, "up") }, "Create account"),
      ),
    ),
  );
}
