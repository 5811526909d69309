// Sign in and sign up with email and password, or with Google (a popup; the Auth emulator's
// account chooser in development and test).
import * as auth from "./auth";
import { field, flash, h, mount } from "./dom";

export function signInPage(): void {
  const email = h("input", { type: "email", name: "email", autocomplete: "username", required: true }) as HTMLInputElement;
  const password = h("input", { type: "password", name: "password", autocomplete: "current-password", required: true, minlength: 6 }) as HTMLInputElement;
  const go = async (ev: Event, action: "in" | "up" | "google") => {
    ev.preventDefault();
    if (action !== "google" && (!email.reportValidity() || !password.reportValidity())) return;
    const button = ev.currentTarget as HTMLButtonElement;
    button.disabled = true;
    button.setAttribute("aria-busy", "true");
    try {
      if (action === "google" && auth.usesEmulator()) return chooser();
      if (action === "google") await auth.signInWithGoogle();
      else if (action === "in") await auth.signIn(email.value, password.value);
      else await auth.signUp(email.value, password.value);
    } catch (err) {
      flash(auth.authMessage(err));
    } finally {
      button.disabled = false;
      button.removeAttribute("aria-busy");
    }
  };
  // Development: the emulator's stand-in for Google's account chooser.
  const chooser = () => {
    const gEmail = h("input", { type: "email", name: "google_email", required: true, autocomplete: "off" }) as HTMLInputElement;
    const gName = h("input", { name: "google_name", autocomplete: "off" }) as HTMLInputElement;
    const form = h("form", { class: "card narrow", "aria-labelledby": "google-title" },
      h("h1", { id: "google-title" }, "Choose a Google account"),
      h("p", { class: "muted" }, "Development: the Firebase Auth emulator signs in any Google account by its email (no password). In production this is Google's own window."),
      field("Google email", gEmail), field("Name (optional)", gName),
      h("div", { class: "row" }, h("button", { type: "submit", id: "google-continue" }, "Continue"),
        h("button", { type: "button", class: "secondary", onclick: () => signInPage() }, "Back")));
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const button = form.querySelector("button") as HTMLButtonElement;
      button.disabled = true;
      try {
        await auth.signInWithEmulatedGoogle(gEmail.value, gName.value);
      } catch (err) {
        flash(auth.authMessage(err));
      } finally {
        button.disabled = false;
      }
    });
    mount(form);
    gEmail.focus();
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
      h("p", { class: "or" }, "or"),
      h("button", { type: "button", id: "sign-in-google", class: "secondary wide", onclick: (ev: Event) => go(ev, "google") }, "Sign in with Google"),
    ),
  );
}
