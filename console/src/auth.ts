// Firebase sign-in (modular SDK): the emulator in development and test, the real project
// in production, both from /console/config.json served by the API.
import { initializeApp } from "firebase/app";
import {
  type Auth,
  type User,
  GoogleAuthProvider,
  connectAuthEmulator,
  createUserWithEmailAndPassword,
  getAuth,
  onAuthStateChanged,
  signInWithEmailAndPassword,
  signInWithCredential,
  signInWithPopup,
  signOut,
} from "firebase/auth";

export interface ConsoleConfig {
  firebase: { apiKey: string; authDomain: string; projectId: string };
  auth_emulator_url: string | null;
}

let auth: Auth | null = null;
let emulator = false;

/** Whether sign-in goes to the Firebase Auth emulator (development and test). */
export function usesEmulator(): boolean {
  return emulator;
}

export async function start(onChange: (user: User | null) => void): Promise<void> {
  const resp = await fetch("/console/config.json");
  const config = (await resp.json()) as ConsoleConfig;
  const app = initializeApp(config.firebase);
  auth = getAuth(app);
  if (config.auth_emulator_url) connectAuthEmulator(auth, config.auth_emulator_url, { disableWarnings: true });
  emulator = Boolean(config.auth_emulator_url);
  onAuthStateChanged(auth, onChange);
}

export async function idToken(fresh = false): Promise<string | null> {
  return auth?.currentUser ? auth.currentUser.getIdToken(fresh) : null;
}

export async function signIn(email: string, password: string): Promise<void> {
  await signInWithEmailAndPassword(auth!, email, password);
}

/** Google sign-in in Google's popup (production). */
export async function signInWithGoogle(): Promise<void> {
  const provider = new GoogleAuthProvider();
  provider.setCustomParameters({ prompt: "select_account" });
  await signInWithPopup(auth!, provider);
}

/**
 * Google sign-in against the Auth emulator: a Google account given by its email. The SDK's
 * popup needs Google's gapi script from apis.google.com (its relay iframe, the emulator's
 * too), which the console must not load, so development signs in the way the emulator
 * documents: a Google credential whose ID token is the account's claims as JSON.
 */
export async function signInWithEmulatedGoogle(email: string, name: string): Promise<void> {
  const claims = { sub: `google-${email.toLowerCase()}`, email, email_verified: true, name: name || undefined };
  await signInWithCredential(auth!, GoogleAuthProvider.credential(JSON.stringify(claims)));
}

export async function signUp(email: string, password: string): Promise<void> {
  await createUserWithEmailAndPassword(auth!, email, password);
}

export async function logOut(): Promise<void> {
  await signOut(auth!);
}

export function authMessage(err: unknown): string {
  const code = (err as { code?: string }).code ?? "";
  const messages: Record<string, string> = {
    "auth/invalid-credential": "Wrong email or password.",
    "auth/wrong-password": "Wrong email or password.",
    "auth/user-not-found": "No account with this email: sign up first.",
    "auth/email-already-in-use": "An account with this email exists: sign in instead.",
    "auth/weak-password": "Choose a password of at least 6 characters.",
    "auth/invalid-email": "That email address is not valid.",
    "auth/too-many-requests": "Too many attempts: wait a moment and retry.",
    "auth/popup-closed-by-user": "The Google sign-in window was closed before signing in.",
    "auth/cancelled-popup-request": "The Google sign-in window was closed before signing in.",
    "auth/popup-blocked": "The browser blocked the Google sign-in window: allow pop-ups for this site and retry.",
    "auth/operation-not-allowed": "Google sign-in is not enabled for this project.",
    "auth/account-exists-with-different-credential": "An account with this email exists: sign in with its password.",
  };
  return messages[code] ?? (err instanceof Error ? err.message : String(err));
}
