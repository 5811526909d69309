// Firebase sign-in (modular SDK): the emulator in development and test, the real project
// in production, both from /console/config.json served by the API.
import { initializeApp } from "firebase/app";
import {
  type Auth,
  type User,
  connectAuthEmulator,
  createUserWithEmailAndPassword,
  getAuth,
  onAuthStateChanged,
  signInWithEmailAndPassword,
  signOut,
} from "firebase/auth";

export interface ConsoleConfig {
  firebase: { apiKey: string; authDomain: string; projectId: string };
  auth_emulator_url: string | null;
}

let auth: Auth | null = null;

export async function start(onChange: (user: User | null) => void): Promise<void> {
  const resp = await fetch("/console/config.json");
  const config = (await resp.json()) as ConsoleConfig;
  const app = initializeApp(config.firebase);
  auth = getAuth(app);
  if (config.auth_emulator_url) connectAuthEmulator(auth, config.auth_emulator_url, { disableWarnings: true });
  onAuthStateChanged(auth, onChange);
}

export async function idToken(fresh = false): Promise<string | null> {
  return auth?.currentUser ? auth.currentUser.getIdToken(fresh) : null;
}

export async function signIn(email: string, password: string): Promise<void> {
  await signInWithEmailAndPassword(auth!, email, password);
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
  };
  return messages[code] ?? (err instanceof Error ? err.message : String(err));
}
