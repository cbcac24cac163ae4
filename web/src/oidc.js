// OpenID Connect sign-in: authorization code + PKCE (S256), for deployments (docs/web-inbox.md).
// The code verifier, state and nonce live in sessionStorage only for the redirect round-trip and are
// removed on return, whatever the outcome; the tokens are returned to the caller, never stored.

const PENDING = "mailroom.oidc.pending";

function base64url(bytes) {
  let text = "";
  for (const byte of bytes) text += String.fromCharCode(byte);
  return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function random(bytes = 32) { return base64url(crypto.getRandomValues(new Uint8Array(bytes))); }

export async function codeChallenge(verifier) {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier));
  return base64url(new Uint8Array(digest));
}

export function redirectUri(config) { return config.redirect_uri || `${location.origin}/`; }

// Leaves for the identity provider's authorization endpoint.
export async function beginSignIn(config) {
  const pending = { verifier: random(32), state: random(16), nonce: random(16), redirect_uri: redirectUri(config) };
  sessionStorage.setItem(PENDING, JSON.stringify(pending));
  const params = new URLSearchParams({
    response_type: "code", client_id: config.client_id, redirect_uri: pending.redirect_uri, scope: config.scope,
    state: pending.state, nonce: pending.nonce, code_challenge: await codeChallenge(pending.verifier),
    code_challenge_method: "S256",
  });
  location.assign(`${config.authorization_endpoint}?${params}`);
}

function claimsOf(jwt) {
  try {
    const payload = jwt.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const bytes = Uint8Array.from(atob(payload.padEnd(payload.length + ((4 - (payload.length % 4)) % 4), "=")), (c) => c.charCodeAt(0));
    return JSON.parse(new TextDecoder().decode(bytes));
  } catch { return null; }
}

// On return from the identity provider (`?code=…&state=…` or `?error=…`): null when this page load
// is not a return; otherwise the token and who signed in, or an Error saying why it was refused.
export async function completeSignIn(config) {
  const url = new URL(location.href);
  const code = url.searchParams.get("code");
  const returned = url.searchParams.get("state");
  const error = url.searchParams.get("error");
  if (!code && !error) return null;
  let pending = null;
  try { pending = JSON.parse(sessionStorage.getItem(PENDING) || "null"); } catch { pending = null; }
  sessionStorage.removeItem(PENDING);
  for (const key of ["code", "state", "error", "error_description", "iss", "session_state"]) url.searchParams.delete(key);
  history.replaceState(null, "", `${url.pathname}${url.search}${url.hash}`);
  if (!pending || !returned || returned !== pending.state) {
    throw new Error("Sign-in refused: the answer from the identity provider is not for this sign-in (state mismatch). Sign in again.");
  }
  if (error) throw new Error(`The identity provider did not sign you in (${error.slice(0, 100)}).`);
  if (!config) throw new Error("Organisation sign-in is not configured here.");
  const issued = url.searchParams.get("iss");
  if (issued && issued !== config.issuer) throw new Error("Sign-in refused: the answer came from another issuer.");
  const response = await fetch(config.token_endpoint, {
    method: "POST", cache: "no-store", credentials: "omit", referrerPolicy: "no-referrer",
    headers: { "Content-Type": "application/x-www-form-urlencoded", Accept: "application/json" },
    body: new URLSearchParams({ grant_type: "authorization_code", code, redirect_uri: pending.redirect_uri,
      client_id: config.client_id, code_verifier: pending.verifier }),
  });
  let data = null;
  try { data = await response.json(); } catch { data = null; }
  if (!response.ok || !data || typeof data.access_token !== "string") {
    const reason = (data && (data.error_description || data.error)) || `HTTP ${response.status}`;
    throw new Error(`The sign-in could not be completed: ${String(reason).slice(0, 200)}`);
  }
  const identity = data.id_token ? claimsOf(data.id_token) : null;
  if (data.id_token) {
    const audiences = identity && [].concat(identity.aud || []);
    if (!identity || identity.nonce !== pending.nonce || identity.iss !== config.issuer || !audiences.includes(config.client_id)) {
      throw new Error("Sign-in refused: the ID token is not for this sign-in (nonce, issuer or audience).");
    }
  }
  const access = claimsOf(data.access_token) || {};
  const who = identity || access;
  const roles = [].concat(access.roles || []).filter((r) => typeof r === "string");
  return { token: data.access_token, user: String(who.sub || access.sub || "you"), email: who.email || null, roles };
}
