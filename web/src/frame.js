// The document a message's sanitised HTML is shown in (a srcdoc iframe). The frame is sandboxed
// without scripts and without same-origin (an opaque origin: it can neither run code nor read the
// app); links may open in a new tab. Its own Content-Security-Policy adds that nothing remote loads
// (images, stylesheets, @import, fonts, media, frames) until the user asks with "Load images":
// attachments and inline cid: images come from our own origin's API.

export const FRAME_SANDBOX = "allow-popups allow-popups-to-escape-sandbox";

export function frameDocument(html, loadImages, origin) {
  const own = `${origin}/api/`;
  const remote = loadImages ? " https: http:" : "";
  const csp = `default-src 'none'; img-src ${own} data:${remote}; style-src 'unsafe-inline'${remote}; `
    + `font-src data:${remote}; media-src ${own}${remote}; form-action 'none'; base-uri 'none'`;
  return `<!doctype html><html><head><meta charset="utf-8">`
    + `<meta http-equiv="Content-Security-Policy" content="${csp}">`
    + `<meta name="referrer" content="no-referrer"><base target="_blank"></head>`
    + `<body style="font: 14px/1.45 system-ui, sans-serif; color: #1b1f24; margin: 10px; overflow-wrap: anywhere">${html}</body></html>`;
}
