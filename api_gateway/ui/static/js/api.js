// The REST API with the session cookie: the same endpoints the CLI and curl use.

export class ApiError extends Error {
  constructor(status, message, field) {
    super(message);
    this.status = status;
    this.field = field;
  }
}

export const session = { name: null, scopes: [], csrf: null };

export function can(scope) {
  return session.scopes.includes(scope) || session.scopes.includes("admin");
}

let onUnauthorized = () => {};
export function whenUnauthorized(callback) {
  onUnauthorized = callback;
}

export async function api(path, { method = "GET", body } = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && session.csrf) headers["X-CSRF-Token"] = session.csrf;
  const response = await fetch(path, {
    method, headers, credentials: "same-origin", cache: "no-store",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.status === 204) return null;
  const data = await response.json().catch(() => null);
  if (!response.ok) {
    const error = data && data.error ? data.error : { message: `${response.status} ${response.statusText}` };
    if (response.status === 401 && path !== "/session") onUnauthorized();
    throw new ApiError(response.status, error.message, error.field);
  }
  return data;
}

export async function loadSession() {
  const me = await api("/session");
  Object.assign(session, { name: me.name, scopes: me.scopes, csrf: me.csrf_token });
  return me;
}

export async function login(fields) {
  const me = await api("/session", { method: "POST", body: fields });
  Object.assign(session, { name: me.name, scopes: me.scopes, csrf: me.csrf_token });
  return me;
}

export async function logout() {
  try {
    await api("/session", { method: "DELETE" });
  } finally {
    Object.assign(session, { name: null, scopes: [], csrf: null });
  }
}
