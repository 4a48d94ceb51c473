// The API token: taken once from `#token=...` (the link `grid serve` prints)
// or typed into the form, then kept in this browser's localStorage so later
// visits need neither. The token never stays in the address bar, where it
// would end up in history, bookmarks and screenshots.

const KEY = "browsergrid.token";

/** Takes a token from the URL fragment, stores it and removes it from the address bar. */
export function takeTokenFromUrl() {
  const match = /(?:^#|&)token=([^&]*)/.exec(location.hash);
  if (!match) return null;
  let token;
  try {
    token = decodeURIComponent(match[1]).trim();
  } catch {
    token = match[1].trim();
  }
  // Keep any other fragment parameters; drop the token.
  const rest = location.hash
    .slice(1)
    .split("&")
    .filter((part) => part && !part.startsWith("token="))
    .join("&");
  history.replaceState(history.state, "", location.pathname + location.search + (rest ? `#${rest}` : ""));
  if (token) storeToken(token);
  return token || null;
}

export function storedToken() {
  try {
    return localStorage.getItem(KEY) || null;
  } catch {
    // Storage can be switched off; the token then lasts for this page only.
    return null;
  }
}

export function storeToken(token) {
  try {
    localStorage.setItem(KEY, token);
  } catch {
    // See storedToken.
  }
}

export function forgetToken() {
  try {
    localStorage.removeItem(KEY);
  } catch {
    // See storedToken.
  }
}
