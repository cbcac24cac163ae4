// The mailroom web inbox: plain modern JavaScript on the public HTTP API (docs/web-inbox.md).
// Rules this file keeps: the bearer token lives in this module's memory only (never storage,
// never a URL); text from mail and users goes into the DOM as text (textContent), never as HTML;
// a message's (server-sanitised) HTML is shown only inside a sandboxed iframe without scripts or
// same-origin, whose own Content-Security-Policy blocks every remote load until "Load images".

import { FRAME_SANDBOX, frameDocument } from "./frame.js";
import { beginSignIn, completeSignIn } from "./oidc.js";

const VIEWS = [["open", "Open"], ["mine", "Assigned to me"], ["unassigned", "Unassigned"], ["closed", "Closed"],
  ["sent", "Sent"], ["spam", "Spam"], ["all", "All"]];
const INSERT_KINDS = ["document", "meeting", "article", "video", "quote", "link"];
const SEARCH_DEBOUNCE_MS = 300;
// the emoji picker's built-in set: [character, name]
const EMOJI = [["👍", "Thumbs up"], ["🙂", "Smiling face"], ["😀", "Grinning face"], ["😉", "Winking face"],
  ["🙏", "Thank you"], ["👋", "Waving hand"], ["🎉", "Party popper"], ["✅", "Check mark"], ["❤️", "Red heart"],
  ["🚀", "Rocket"], ["📦", "Package"], ["📞", "Telephone"], ["⏰", "Alarm clock"], ["😢", "Crying face"],
  ["🤔", "Thinking face"], ["👀", "Eyes"]];
const CALL_OUTCOMES = [["answered", "Answered"], ["no_answer", "No answer"], ["voicemail", "Voicemail"],
  ["busy", "Busy"], ["failed", "Failed"]];
const POLL_MS = 3000; // new mail without reloading: the list and counts are cheap indexed queries
const PAGE = 50;
const READ_ONLY_REASON = "Read only: you can view this inbox, but only its members can act in it.";

const state = {
  token: null, user: null, roles: [], inboxes: [], counts: {}, inboxId: null, view: "open",
  items: [], nextCursor: null, selectedId: null, conversation: null, search: "", pollTimer: null,
  contacts: new Set(), auth: { dev_auth: true, oidc: null }, searchTimer: null,
};

const $ = (id) => document.getElementById(id);

// --- DOM: text only -------------------------------------------------------------------------------

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key in el && typeof value !== "string") el[key] = value;
    else el.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

function say(message) { $("status").textContent = message || ""; }

function when(iso) {
  if (!iso) return "";
  const date = new Date(iso);
  const today = new Date();
  return date.toDateString() === today.toDateString()
    ? date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })
    : date.toLocaleDateString([], { month: "short", day: "numeric", year: "numeric" });
}

function person(address) {
  if (!address) return "";
  return address.name ? `${address.name} <${address.email}>` : address.email || "";
}

// --- the API ------------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function api(method, path, body, extraHeaders = {}) {
  const headers = { ...extraHeaders, Accept: "application/json", Authorization: `Bearer ${state.token}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, { method, headers, cache: "no-store", credentials: "omit",
    body: body === undefined ? undefined : JSON.stringify(body) });
  let data = null;
  try { data = await response.json(); } catch { data = null; }
  if (response.status === 401) {
    signOut("Your session has ended: sign in again.");
    throw new ApiError(401, "signed out");
  }
  if (!response.ok) {
    const error = data && data.error;
    const details = error && error.details ? ` (${JSON.stringify(error.details)})` : "";
    throw new ApiError(response.status, (error && error.message ? error.message : `HTTP ${response.status}`) + details);
  }
  return data;
}

// --- sign in / out -------------------------------------------------------------------------------

async function signIn(event) {
  event.preventDefault();
  const userId = $("user-id").value.trim();
  $("sign-in-error").textContent = "";
  if (!userId) { $("sign-in-error").textContent = "Type a user id."; return; }
  const response = await fetch("/auth/dev-token", { method: "POST", cache: "no-store", credentials: "omit",
    headers: { "Content-Type": "application/json" }, body: JSON.stringify({ user_id: userId, role: $("dev-role").value }) });
  let data = null;
  try { data = await response.json(); } catch { data = null; }
  if (!response.ok) {
    $("sign-in-error").textContent = (data && data.error && data.error.message) || `Sign-in failed (HTTP ${response.status})`;
    return;
  }
  state.token = data.token;
  state.user = data.user_id;
  state.roles = data.roles || [];
  await start();
}

// How this deployment signs in (GET /auth/config): the dev sign-in and/or OpenID Connect.
async function loadAuthConfig() {
  try {
    const response = await fetch("/auth/config", { cache: "no-store", credentials: "omit" });
    if (response.ok) state.auth = await response.json();
  } catch { /* an older server: the dev sign-in only */ }
  const oidc = state.auth && state.auth.oidc;
  $("sign-in-form").hidden = !(state.auth && state.auth.dev_auth);
  $("oidc-sign-in").hidden = !oidc;
  if (state.auth && state.auth.oidc_error) $("oidc-error").textContent = state.auth.oidc_error;
  else if (!oidc && $("sign-in-form").hidden) $("oidc-error").textContent = "No sign-in is configured on this server.";
}

async function signInWithOrganisation() {
  $("oidc-error").textContent = "";
  try {
    await beginSignIn(state.auth.oidc);
  } catch (error) {
    $("oidc-error").textContent = `Could not start the sign-in: ${error.message}`;
  }
}

async function boot() {
  signOut("");
  await loadAuthConfig();
  let signedIn = null;
  try {
    signedIn = await completeSignIn(state.auth && state.auth.oidc);
  } catch (error) {
    $("oidc-error").textContent = error.message;
    return;
  }
  if (!signedIn) return;
  state.token = signedIn.token;
  state.user = signedIn.user;
  state.roles = signedIn.roles;
  await start();
}

function signOut(message) {
  state.token = null;
  clearInterval(state.pollTimer);
  Object.assign(state, { user: null, inboxes: [], items: [], conversation: null, selectedId: null, inboxId: null });
  $("app").hidden = true;
  $("compose").hidden = true;
  $("compose-button").hidden = true;
  $("sign-out").hidden = true;
  $("whoami").textContent = "";
  $("sign-in-page").hidden = false;
  say(message || "");
  $("user-id").focus();
}

async function start() {
  $("sign-in-page").hidden = true;
  $("app").hidden = false;
  $("whoami").textContent = `Signed in as ${state.user}${state.roles.length ? ` (${state.roles.join(", ")})` : ""}`;
  $("sign-out").hidden = false;
  say("");
  const inboxes = await api("GET", "/api/inboxes");
  state.inboxes = inboxes.items;
  const actable = state.inboxes.filter((i) => i.permissions && i.permissions.act);
  $("compose-button").hidden = false;
  $("compose-button").disabled = actable.length === 0;
  $("compose-button").title = actable.length ? "" : READ_ONLY_REASON;
  $("compose-reason").textContent = actable.length ? "" : READ_ONLY_REASON;
  if (!state.inboxes.length) {
    $("inboxes").replaceChildren(h("p", { class: "empty" }, "No inbox is shared with you."));
    return;
  }
  state.inboxId = state.inboxes[0].id;
  state.view = "open";
  await refreshCounts();
  await loadList();
  clearInterval(state.pollTimer);
  state.pollTimer = setInterval(poll, POLL_MS);
}

// --- inboxes, views and counts -----------------------------------------------------------------------

async function refreshCounts() {
  const results = await Promise.all(state.inboxes.map((inbox) =>
    api("GET", `/api/inboxes/${encodeURIComponent(inbox.id)}/views`).then((counts) => [inbox.id, counts])));
  for (const [id, counts] of results) state.counts[id] = counts;
  renderSidebar();
}

// A view's count and unread count, whichever shape the API answers: {"open": 3} (no unread state),
// {"open": {"count": 3, "unread": 1}}, or {"open": 3, "unread_counts": {"open": 1}}.
function viewCount(counts, view) {
  const entry = counts[view];
  const count = entry && typeof entry === "object" ? entry.count : entry;
  let unread = entry && typeof entry === "object" ? entry.unread : undefined;
  if (unread === undefined && counts.unread_counts && typeof counts.unread_counts === "object") unread = counts.unread_counts[view];
  return { count: Number.isFinite(count) ? count : null, unread: Number.isFinite(unread) ? unread : null };
}

function renderSidebar() {
  const sections = state.inboxes.map((inbox) => {
    const counts = state.counts[inbox.id] || {};
    const headingId = `inbox-${inbox.id}`;
    return h("section", { "aria-labelledby": headingId },
      h("h2", { id: headingId }, inbox.name),
      h("ul", {}, VIEWS.map(([view, label]) => h("li", {},
        h("a", {
          href: "#", "aria-current": inbox.id === state.inboxId && view === state.view ? "page" : null,
          onclick: (event) => { event.preventDefault(); selectView(inbox.id, view); },
        }, ...viewLabel(label, viewCount(counts, view))),
      ))));
  });
  $("inboxes").replaceChildren(...sections);
}

function viewLabel(label, { count, unread }) {
  return [h("span", {}, label), h("span", {}, unread ? h("span", { class: "unread-count" }, `${unread} unread`) : null,
    h("span", { class: "count" }, count === null ? "" : String(count)))];
}

async function selectView(inboxId, view) {
  state.inboxId = inboxId;
  state.view = view;
  state.items = [];
  renderSidebar();
  await loadList();
}

// --- the conversation list -------------------------------------------------------------------------

function currentInbox() { return state.inboxes.find((i) => i.id === state.inboxId); }

async function loadList({ more = false, keep = 0 } = {}) {
  const params = new URLSearchParams({ view: state.view, limit: String(Math.min(200, Math.max(PAGE, keep))) });
  if (more && state.nextCursor) params.set("cursor", state.nextCursor);
  const query = state.search.trim();
  if (query) params.set("q", query.slice(0, 200)); // server-side search (ignored by an API without it)
  const seq = (state.listSeq = (state.listSeq || 0) + 1);
  const page = await api("GET", `/api/inboxes/${encodeURIComponent(state.inboxId)}/conversations?${params}`);
  if (seq !== state.listSeq) return; // a newer load (another search, view or page) answers instead
  state.items = more ? state.items.concat(page.items) : page.items;
  // an API with unread state searches on the server (same release); an older one ignores q, and the
  // list is then filtered here, on what is loaded
  if (page.items.length) state.serverSearch = page.items.some((c) => typeof c.unread === "boolean");
  state.nextCursor = page.next_cursor;
  for (const item of page.items) if (item.contact && item.contact.email) state.contacts.add(person(item.contact));
  $("known-contacts").replaceChildren(...[...state.contacts].map((value) => h("option", { value })));
  const viewName = VIEWS.find(([v]) => v === state.view)[1];
  $("list-title").textContent = `${currentInbox().name}: ${viewName}`;
  renderList();
}

function visibleItems() {
  const query = state.search.trim().toLowerCase();
  if (!query || state.serverSearch) return state.items;
  return state.items.filter((c) => [c.subject, c.snippet, c.contact && c.contact.email, c.contact && c.contact.name]
    .some((text) => (text || "").toLowerCase().includes(query)));
}

function renderList() {
  const items = visibleItems();
  const rows = items.map((c) => h("li", {},
    h("button", {
      type: "button", "aria-current": c.id === state.selectedId ? "true" : null, dataset: { id: c.id },
      class: c.unread === true ? "unread" : null, onclick: () => openConversation(c.id),
    },
    h("span", { class: "row" },
      c.unread === true ? h("span", { class: "badge" }, "Unread") : null,
      h("span", { class: "sender" }, (c.contact && (c.contact.name || c.contact.email)) || "(unknown sender)"),
      h("time", { class: "meta", datetime: c.last_message_at || "" }, when(c.last_message_at))),
    h("span", { class: "subject" }, c.subject || "(no subject)"),
    h("span", { class: "snippet" }, c.snippet || ""),
    h("span", { class: "meta" }, [
      c.assignee_user_id ? `Assigned to ${c.assignee_user_id}` : "Unassigned",
      c.status === "closed" ? "Closed" : null, c.spam ? "Spam" : null,
      `${c.message_count} message${c.message_count === 1 ? "" : "s"}`,
    ].filter(Boolean).join(" · ")))));
  const empty = state.search.trim() ? "No conversations match the search." : "No conversations here.";
  $("conversation-list").replaceChildren(...(rows.length ? rows : [h("li", { class: "empty" }, empty)]));
  $("load-more").hidden = !state.nextCursor;
}

async function poll() {
  if (!state.token || document.hidden) return;
  try {
    await refreshCounts();
    const before = new Map(state.items.map((c) => [c.id, `${c.last_message_at}|${c.message_count}|${c.status}|${c.assignee_user_id}`]));
    const searched = state.search;
    await loadList({ keep: state.items.length });
    if (searched !== state.search) return; // the search changed meanwhile: its own load shows it
    const selected = state.items.find((c) => c.id === state.selectedId);
    const changed = selected && before.get(selected.id) !== `${selected.last_message_at}|${selected.message_count}|${selected.status}|${selected.assignee_user_id}`;
    if (changed && !document.querySelector("#conversation form")) await openConversation(selected.id, { keepFocus: true });
  } catch (error) {
    if (error.status !== 401) say(`Could not refresh: ${error.message}`);
  }
}

// --- one conversation ---------------------------------------------------------------------------

async function openConversation(id, { keepFocus = false } = {}) {
  state.selectedId = id;
  renderList();
  const conversation = await api("GET", `/api/conversations/${encodeURIComponent(id)}`);
  // another conversation was opened meanwhile (e.g. clicked while an action reloaded this one):
  // the later choice stands, a slower answer for the earlier one must not cover it
  if (state.selectedId !== id) return;
  state.conversation = conversation;
  const listed = state.items.find((c) => c.id === id);
  if (conversation.unread === true || (listed && listed.unread === true)) markRead(id, true);
  const messages = await Promise.all(conversation.messages.map((m) => (m.has_html
    ? api("GET", `/api/messages/${encodeURIComponent(m.id)}`) : Promise.resolve(m))));
  if (state.selectedId !== id) return;
  renderConversation(conversation, messages);
  if (!keepFocus) $("conversation").querySelector("h2").focus();
}

// Read state is per user: opening a conversation marks it read; "Mark as unread" undoes it.
async function markRead(id, read) {
  try {
    await api("POST", `/api/conversations/${encodeURIComponent(id)}/${read ? "read" : "unread"}`, {});
  } catch (error) {
    if (error.status !== 401 && !read) say(error.message);
    return false;
  }
  const listed = state.items.find((c) => c.id === id);
  if (listed) listed.unread = !read;
  if (state.conversation && state.conversation.id === id) state.conversation.unread = !read;
  setRowUnread(id, !read);
  if (!read) say("Marked as unread.");
  refreshCounts().catch(() => {});
  return true;
}

// One row changed in place: re-rendering the list here could swallow a click on another row that
// is under way (its element replaced between mousedown and mouseup).
function setRowUnread(id, unread) {
  const button = $("conversation-list").querySelector(`button[data-id="${CSS.escape(id)}"]`);
  if (!button) return;
  button.classList.toggle("unread", unread);
  const badge = button.querySelector(".badge");
  if (unread && !badge) button.querySelector(".row").prepend(h("span", { class: "badge" }, "Unread"));
  if (!unread && badge) badge.remove();
}

function hasUnreadState(c) {
  const listed = state.items.find((item) => item.id === c.id);
  return typeof c.unread === "boolean" || Boolean(listed && typeof listed.unread === "boolean");
}

function canAct() { return Boolean(state.conversation && state.conversation.permissions && state.conversation.permissions.act); }

function actButton(label, onclick, extra = {}) {
  const allowed = canAct();
  return h("button", { type: "button", ...extra, disabled: !allowed, "aria-describedby": allowed ? null : "read-only-reason",
    onclick: allowed ? onclick : null }, label);
}

async function act(path, body, done, headers = {}) {
  try {
    await api("POST", path, body, headers);
    say(done);
    await Promise.all([openConversation(state.conversation.id, { keepFocus: true }), refreshCounts()]);
    await loadList({ keep: state.items.length });
  } catch (error) {
    if (error.status !== 401) say(error.message); // e.g. the API's 403 with its reason
  }
}

function menuButton(label, items, { disabled = false, menuClass = null } = {}) {
  const menuId = `menu-${label.replace(/\W+/g, "-").toLowerCase()}-${Math.random().toString(36).slice(2, 7)}`;
  const list = h("div", { role: "menu", id: menuId, hidden: true, "aria-label": label, class: menuClass });
  const button = h("button", { type: "button", class: "quiet", "aria-haspopup": "menu", "aria-expanded": "false",
    "aria-controls": menuId, disabled, "aria-describedby": disabled ? "read-only-reason" : null }, label);
  const close = () => { list.hidden = true; button.setAttribute("aria-expanded", "false"); };
  const entries = items.map(([text, onchoose]) => h("button", { type: "button", role: "menuitem", tabindex: "-1",
    onclick: () => { close(); onchoose(); } }, text));
  list.append(...entries);
  button.addEventListener("click", () => {
    const open = list.hidden;
    list.hidden = !open;
    button.setAttribute("aria-expanded", String(open));
    if (open && entries[0]) entries[0].focus();
  });
  list.addEventListener("keydown", (event) => {
    const index = entries.indexOf(document.activeElement);
    if (event.key === "ArrowDown") { event.preventDefault(); entries[(index + 1) % entries.length].focus(); }
    if (event.key === "ArrowUp") { event.preventDefault(); entries[(index - 1 + entries.length) % entries.length].focus(); }
    if (event.key === "Escape") { event.stopPropagation(); close(); button.focus(); }
  });
  return h("span", { class: "menu" }, button, list);
}

function renderConversation(c, messages) {
  const inbox = state.inboxes.find((i) => i.id === c.inbox_id) || currentInbox();
  const path = `/api/conversations/${encodeURIComponent(c.id)}`;
  const allowed = canAct();
  const assignItems = [[`Assign to me (${state.user})`, () => act(`${path}/assign`, { assignee_user_id: state.user }, "Assigned to you.")]]
    .concat((inbox.members || []).filter((m) => m.user_id !== state.user).map((m) => [
      `${m.user_id} (${m.email})`, () => act(`${path}/assign`, { assignee_user_id: m.user_id }, `Assigned to ${m.user_id}.`)]))
    .concat(c.assignee_user_id ? [["Unassign", () => act(`${path}/assign`, { assignee_user_id: null }, "Unassigned.")]] : []);
  const moveItems = state.inboxes.filter((i) => i.id !== c.inbox_id && i.permissions && i.permissions.act)
    .map((i) => [i.name, () => act(`${path}/move`, { inbox_id: i.id }, `Moved to ${i.name}.`)]);
  const closeControl = c.status === "closed"
    ? actButton("Reopen", () => act(`${path}/reopen`, {}, "Reopened."))
    : actButton("Close conversation", () => closeConversation(c, path));
  const toolbar = h("div", { class: "toolbar", role: "toolbar", "aria-label": "Conversation actions" },
    actButton("Reply", () => openReply()),
    menuButton("Assign", assignItems, { disabled: !allowed }),
    closeControl,
    menuButton("Move", moveItems.length ? moveItems : [["No other inbox you can act in", () => {}]], { disabled: !allowed }),
    c.spam ? actButton("Not spam", () => act(`${path}/not-spam`, {}, "Marked as not spam."))
      : actButton("Mark as spam", () => act(`${path}/spam`, {}, "Marked as spam.")),
    actButton("Comment", () => openComment(path)),
    actButton("Forward", () => openForward(c)),
    Array.isArray(c.calls) ? actButton("Log call", () => openLogCall(c)) : null,
    hasUnreadState(c) ? h("button", { type: "button", class: "quiet", onclick: () => markRead(c.id, false) }, "Mark as unread") : null);
  const facts = [person(c.contact), c.status === "closed" ? "Closed" : "Open",
    c.assignee_user_id ? `Assigned to ${c.assignee_user_id}` : "Unassigned",
    c.ticket ? `Ticket ${c.ticket.id} (${c.ticket.status})` : null].filter(Boolean).join(" · ");
  const timeline = [...messages.map((m) => ({ at: m.received_at, node: renderMessage(m) })),
    ...(c.comments || []).map((comment) => ({ at: comment.created_at, node: h("aside", { class: "comment", "aria-label": "Comment" },
      h("div", { class: "meta" }, `Comment by ${comment.author_email || comment.author_user_id} · ${when(comment.created_at)}`),
      h("p", {}, comment.body)) })),
    ...(Array.isArray(c.calls) ? c.calls : []).map((call) => ({ at: call.called_at || call.created_at || "",
      node: renderCall(call) }))].sort((a, b) => (a.at < b.at ? -1 : a.at > b.at ? 1 : 0));
  $("conversation").replaceChildren(...[
    h("h2", { tabindex: "-1" }, c.subject || "(no subject)"),
    h("p", { class: "meta" }, facts),
    callLink(c),
    toolbar,
    allowed ? null : h("p", { class: "reason", id: "read-only-reason" }, READ_ONLY_REASON),
    h("div", { id: "close-question" }),
    ...timeline.map((t) => t.node),
    h("div", { id: "reply-area" }),
    h("section", { id: "contact", class: "contact", "aria-labelledby": "contact-title" },
      h("h3", { id: "contact-title" }, "Contact"))].filter(Boolean)); // replaceChildren would show a null as "null"
  loadContact(c.contact).catch((error) => { if (error.status !== 401) say(`Contact: ${error.message}`); });
}

// Calls (when the API has them): a tel: link to the contact, each call in the timeline, "Log call"
function callLink(c) {
  const phone = typeof c.contact_phone === "string" ? c.contact_phone.trim() : "";
  if (!phone) return null;
  const given = typeof c.contact_tel_url === "string" ? c.contact_tel_url : "";
  const href = /^tel:\+?[0-9().\- ]{1,40}$/.test(given) ? given : `tel:${phone.replace(/[^0-9+]/g, "")}`;
  return h("p", { class: "call-link" }, h("a", { href }, `Call ${phone}`));
}

function duration(seconds) {
  if (!Number.isFinite(seconds) || seconds < 0) return null;
  const minutes = Math.floor(seconds / 60);
  return minutes ? `${minutes} min ${seconds % 60} s` : `${seconds} s`;
}

function renderCall(call) {
  const direction = call.direction === "inbound" ? "Incoming call" : call.direction === "outbound" ? "Outgoing call" : "Call";
  const outcome = (CALL_OUTCOMES.find(([value]) => value === call.outcome) || [null, call.outcome])[1];
  const recording = typeof call.recording_url === "string" && /^https:\/\//i.test(call.recording_url) ? call.recording_url : null;
  const by = typeof call.logged_by === "string" ? call.logged_by : null;
  return h("aside", { class: "call", "aria-label": `${direction} ${call.phone_number || ""}`.trim() },
    h("div", { class: "meta" }, [direction, call.phone_number, outcome, duration(call.duration_seconds),
      by ? `logged by ${by}` : null, when(call.called_at || call.created_at)].filter(Boolean).join(" · ")),
    call.notes ? h("p", {}, call.notes) : null,
    recording ? h("a", { href: recording, target: "_blank", rel: "noopener noreferrer" }, "Recording") : null);
}

function openLogCall(c) {
  let idempotencyKey = `call-${randomId()}`; // one per call logged: a double submit logs it once
  const save = h("button", { type: "submit" }, "Save call");
  const path = `/api/conversations/${encodeURIComponent(c.id)}/calls`;
  const direction = h("select", { id: "call-direction" }, h("option", { value: "outbound" }, "Outgoing"),
    h("option", { value: "inbound" }, "Incoming"));
  const phone = h("input", { id: "call-phone", type: "tel", autocomplete: "off", maxlength: "64", value: c.contact_phone || "" });
  const outcome = h("select", { id: "call-outcome" }, CALL_OUTCOMES.map(([value, label]) => h("option", { value }, label)));
  const seconds = h("input", { id: "call-duration", type: "number", min: "0", max: "86400", step: "1", inputmode: "numeric" });
  const notes = h("textarea", { id: "call-notes", rows: "3", maxlength: "10000" });
  const recording = h("input", { id: "call-recording", type: "url", autocomplete: "off", placeholder: "https://" });
  const form = h("form", { class: "editor-form", "aria-label": "Log call", novalidate: true },
    field("Direction", direction), field("Phone number", phone), field("Outcome", outcome),
    field("Duration (seconds)", seconds), field("Notes", notes), field("Recording URL", recording),
    h("div", { class: "toolbar" }, save,
      h("button", { type: "button", class: "quiet", onclick: () => closeReply() }, "Cancel")));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!phone.value.trim()) { say("Type the phone number."); phone.focus(); return; }
    const length = seconds.value === "" ? 0 : Number(seconds.value);
    if (!Number.isInteger(length) || length < 0 || length > 86400) { say("Duration: whole seconds, up to 86400."); seconds.focus(); return; }
    save.disabled = true;
    await act(path, { direction: direction.value, phone_number: phone.value.trim(), outcome: outcome.value,
      duration_seconds: length, notes: notes.value || null, recording_url: recording.value.trim() || null }, "Call logged.",
    { "Idempotency-Key": idempotencyKey });
    save.disabled = false; // still here: refused (the reason is shown); a corrected call is another request
    idempotencyKey = `call-${randomId()}`;
  });
  $("reply-area").replaceChildren(form);
  phone.focus();
}

// Forward the conversation to another team's inbox address or anyone, quoted or attached
function openForward(c) {
  const to = contactSearch(h("input", { id: "forward-to", autocomplete: "off" }));
  const teamAddresses = state.inboxes.filter((i) => i.id !== c.inbox_id).flatMap((i) => i.channel_addresses || []);
  const mode = h("select", { id: "forward-mode" }, h("option", { value: "quote" }, "Quote the messages"),
    h("option", { value: "attach" }, "Attach the messages"));
  const note = h("textarea", { id: "forward-note", rows: "3" });
  const send = h("button", { type: "submit" }, "Send");
  const form = h("form", { class: "editor-form", "aria-label": "Forward", novalidate: true },
    field("To", to), teamAddresses.length ? h("p", { class: "meta" }, `Team inboxes: ${teamAddresses.join(", ")}`) : null,
    field("Mode", mode), field("Note", note),
    h("div", { class: "toolbar" }, send, h("button", { type: "button", class: "quiet", onclick: () => closeReply() }, "Cancel")));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!splitAddresses(to.value).length) { say("Add at least one recipient in To."); to.focus(); return; }
    send.disabled = true;
    try {
      const email = await api("POST", `/api/outbound/conversations/${encodeURIComponent(c.id)}/forwards`, {
        to: splitAddresses(to.value), mode: mode.value, text: note.value || null });
      say(`Forward queued (${email.state}).`);
      closeReply();
    } catch (error) {
      if (error.status !== 401) say(error.message);
      send.disabled = false;
    }
  });
  $("reply-area").replaceChildren(form);
  to.focus();
}

// A comment: for teammates only, never sent to the customer
function openComment(path) {
  const body = h("textarea", { id: "comment-body", rows: "3", maxlength: "20000" });
  const form = h("form", { class: "editor-form", "aria-label": "Comment", novalidate: true },
    h("label", { for: body.id }, "Comment (only teammates see it)"), body,
    h("div", { class: "toolbar" }, h("button", { type: "submit" }, "Add comment"),
      h("button", { type: "button", class: "quiet", onclick: () => closeReply() }, "Cancel")));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!body.value.trim()) { body.focus(); return; }
    await act(`${path}/comments`, { body: body.value }, "Comment added.");
  });
  $("reply-area").replaceChildren(form);
  body.focus();
}

// The contact: name, addresses, phone, and the timeline of every email in and out (contacts API)
async function loadContact(contact) {
  const section = $("contact");
  if (!section || !contact || !contact.contact_id) {
    if (section) section.append(h("p", { class: "meta" }, contact ? person(contact) : "No contact yet."));
    return;
  }
  const id = encodeURIComponent(contact.contact_id);
  const [found, timeline] = await Promise.all([api("GET", `/api/contacts/${id}`),
    api("GET", `/api/contacts/${id}/timeline?limit=20`)]);
  if ($("contact") !== section) return; // another conversation was opened meanwhile
  const phones = (found.identities || []).filter((i) => i.kind === "phone").map((i) => i.value);
  section.replaceChildren(
    h("h3", { id: "contact-title" }, `Contact: ${found.name || found.emails[0] || "unknown"}`),
    h("p", { class: "meta" }, [...found.emails, ...phones].join(" · ")),
    h("ol", { class: "timeline", "aria-label": "Timeline" }, timeline.items.map((entry) => h("li", {},
      h("span", { class: "meta" }, `${entry.kind === "call" ? "Call" : entry.direction === "out" ? "Sent" : "Received"} · ${when(entry.occurred_at)} · `),
      entry.subject || "(no subject)",
      (entry.attachments || []).length ? h("span", { class: "meta" }, ` · ${entry.attachments.map((a) => a.filename).join(", ")}`) : null))));
}

function closeConversation(c, path) {
  if (!(c.ticket && c.ticket.status === "open")) {
    act(`${path}/close`, { close_ticket: false }, "Conversation closed.");
    return;
  }
  const question = h("div", { class: "reason", role: "group", "aria-label": "Close the linked ticket too?" },
    h("p", {}, `This conversation is linked to ticket ${c.ticket.id} (${c.ticket.subject}). Close the ticket too?`),
    h("button", { type: "button", onclick: () => act(`${path}/close`, { close_ticket: true }, "Conversation and ticket closed.") },
      "Close conversation and ticket"), " ",
    h("button", { type: "button", class: "quiet", onclick: () => act(`${path}/close`, { close_ticket: false }, "Conversation closed.") },
      "Close conversation only"));
  $("close-question").replaceChildren(question);
  question.querySelector("button").focus();
}

function messageFrame(message, loadImages) {
  const lines = (message.text || "").split("\n").length;
  const height = Math.max(160, Math.min(640, 60 + 22 * lines + (message.html || "").length / 40));
  return h("iframe", {
    sandbox: FRAME_SANDBOX, referrerpolicy: "no-referrer", loading: "lazy",
    title: `Message from ${person(message.from) || "unknown sender"}`, srcdoc: frameDocument(message.html || "", loadImages, location.origin),
    style: `height: ${Math.round(height)}px`,
  });
}

function renderMessage(m) {
  const body = m.html ? messageFrame(m, Boolean(m.remote_images_loaded)) : h("pre", {}, m.text || m.snippet || "");
  const details = [];
  if (m.forward) {
    const f = m.forward;
    details.push(h("p", { class: "meta" }, `Forwarded by ${person(f.forwarded_by)}; original sender ${person(f.original_sender)}`
      + (f.trusted && f.authenticated ? " (attributed: trusted and authenticated forwarder)" : " (not attributed: the forwarder is not trusted and authenticated)")));
  }
  if (m.attributed_to && m.attributed_to.email && (!m.from || m.attributed_to.email !== m.from.email)) {
    details.push(h("p", { class: "meta" }, `Attributed to ${person(m.attributed_to)}`));
  }
  const actions = [];
  if (m.remote_images_blocked > 0 && !m.remote_images_loaded) {
    actions.push(h("button", { type: "button", class: "quiet", onclick: (event) => loadImages(m, event.target) }, "Load images"));
    actions.push(h("span", { class: "meta" }, `${m.remote_images_blocked} remote image${m.remote_images_blocked === 1 ? "" : "s"} blocked`));
  }
  if (m.html_truncated && m.full_message_url) {
    actions.push(h("a", { href: m.full_message_url, target: "_blank", rel: "noopener noreferrer" }, "View full message"));
  }
  const files = (m.attachments || []).filter((a) => a.disposition !== "inline");
  if (files.length) {
    actions.push(h("ul", { class: "files", "aria-label": "Attachments" }, files.map((a) => h("li", {},
      h("a", { href: a.url, target: "_blank", rel: "noopener noreferrer", download: a.filename || "attachment" }, a.filename || "attachment"),
      ` (${Math.max(1, Math.round((a.size || 0) / 1024))} KB)`))));
  }
  const delivery = (m.flags && (m.flags.reasons || []).find((r) => r.startsWith("delivery:"))) || "";
  return h("article", { class: `message ${m.direction}`, "aria-label": `Message from ${person(m.from)}`, dataset: { id: m.id } },
    h("header", {},
      h("strong", {}, person(m.from) || "(unknown sender)"),
      h("span", { class: "meta" }, `To ${(m.to || []).map(person).join(", ")}${(m.cc || []).length ? ` · Cc ${m.cc.map(person).join(", ")}` : ""}`),
      h("span", { class: "meta" }, `${when(m.received_at)}${delivery ? ` · ${delivery.replace("delivery:", "")}` : ""}`),
      details),
    body,
    actions.length ? h("div", { class: "actions" }, actions) : null);
}

async function loadImages(message, button) {
  try {
    const loaded = await api("GET", `/api/messages/${encodeURIComponent(message.id)}?images=load`);
    const article = button.closest("article");
    article.replaceWith(renderMessage({ ...loaded, remote_images_loaded: true }));
  } catch (error) {
    if (error.status !== 401) say(error.message);
  }
}

// --- the editor (reply and compose) ------------------------------------------------------------------

// "Name <a@b>, c@d" → [{name, email}, "c@d"], as the API takes recipients
function splitAddresses(value) {
  return value.split(/[,;]/).map((s) => s.trim()).filter(Boolean).map((entry) => {
    const match = entry.match(/^(.*?)\s*<([^<>]+)>$/);
    if (!match) return entry;
    const name = match[1].trim().replace(/^"(.*)"$/, "$1");
    return name ? { name, email: match[2].trim() } : match[2].trim();
  });
}

function readFile(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve({ filename: file.name, content_type: file.type || "application/octet-stream",
      content_base64: String(reader.result).split(",", 2)[1] || "" });
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}

// Recipient fields suggest contacts (GET /api/contacts?q=) for the address being typed; each
// suggestion keeps the addresses already in the field (a datalist choice replaces the whole value).
function contactSearch(input) {
  let timer = null;
  input.setAttribute("list", "known-contacts");
  input.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(async () => {
      const value = input.value;
      const cut = Math.max(value.lastIndexOf(","), value.lastIndexOf(";")) + 1;
      const prefix = value.slice(0, cut).trim();
      const typed = value.slice(cut).trim();
      if (typed.length < 2 || typed.includes("<")) return;
      try {
        const found = await api("GET", `/api/contacts?q=${encodeURIComponent(typed)}&limit=8`);
        const options = found.items.flatMap((c) => c.emails.map((email) => person({ name: c.name, email })));
        $("known-contacts").replaceChildren(...options.map((option) =>
          h("option", { value: prefix ? `${prefix} ${option}` : option })));
      } catch (error) {
        if (error.status !== 401) say(`Contact search: ${error.message}`);
      }
    }, 200);
  });
  return input;
}

function field(label, control, { hidden = false } = {}) {
  const id = control.id;
  return h("div", { class: "field", hidden }, h("label", { for: id }, label), control);
}

// Saved HTML (a template or snippet the API rendered) copied into the editor element by element:
// parsed in an inert document (DOMParser runs no script and loads nothing), only formatting tags and
// http(s)/mailto/tel links kept, text as text. The app still never assigns innerHTML.
const SAFE_TAGS = new Set(["P", "BR", "B", "STRONG", "I", "EM", "U", "S", "UL", "OL", "LI", "A", "BLOCKQUOTE", "DIV",
  "SPAN", "H1", "H2", "H3", "H4", "PRE", "CODE", "HR", "SMALL", "TABLE", "THEAD", "TBODY", "TR", "TD", "TH"]);
const DROPPED_TAGS = new Set(["SCRIPT", "STYLE", "TEMPLATE", "IFRAME", "OBJECT", "EMBED", "NOSCRIPT", "SVG", "MATH", "HEAD", "TITLE"]);

function safeNodes(html, text) {
  if (!html) return (text || "").split("\n").map((line) => h("div", {}, line || h("br")));
  const copy = (node) => {
    if (node.nodeType === Node.TEXT_NODE) return document.createTextNode(node.data);
    if (node.nodeType !== Node.ELEMENT_NODE || DROPPED_TAGS.has(node.tagName.toUpperCase())) return null;
    const children = [...node.childNodes].map(copy).filter(Boolean);
    if (!SAFE_TAGS.has(node.tagName)) {
      const fragment = document.createDocumentFragment();
      fragment.append(...children);
      return fragment;
    }
    const element = document.createElement(node.tagName.toLowerCase());
    const href = node.tagName === "A" ? (node.getAttribute("href") || "").trim() : "";
    if (/^(https?:|mailto:|tel:)/i.test(href)) element.setAttribute("href", href);
    element.append(...children);
    return element;
  };
  const parsed = new DOMParser().parseFromString(html, "text/html");
  return [...parsed.body.childNodes].map(copy).filter(Boolean);
}

function randomId() { return Array.from(crypto.getRandomValues(new Uint8Array(8)), (b) => b.toString(16).padStart(2, "0")).join(""); }

// The message editor, its tools, "Insert" and "Attach files", shared by Reply and Compose.
// `context()` says where templates and snippets are offered and rendered: {conversation_id} or
// {inbox_id}; `subject` is the Subject field a template fills (Compose; a reply keeps its subject).
function editorParts(prefix, { context, subject = null }) {
  const editor = h("div", { id: `${prefix}-message`, class: "editor", contenteditable: "true", role: "textbox",
    "aria-multiline": "true", "aria-label": "Message" });
  // where the cursor was in the editor, for what a toolbar, menu or panel inserts there
  let saved = null;
  const remember = () => {
    const selection = getSelection();
    if (selection.rangeCount && editor.contains(selection.getRangeAt(0).commonAncestorContainer)) saved = selection.getRangeAt(0).cloneRange();
  };
  for (const type of ["keyup", "mouseup", "input", "focusout"]) editor.addEventListener(type, remember);
  const cursor = () => {
    editor.focus();
    let range = saved && editor.contains(saved.commonAncestorContainer) ? saved : null;
    if (!range) { range = document.createRange(); range.selectNodeContents(editor); range.collapse(false); }
    const selection = getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
    return range;
  };
  const insertNodes = (nodes) => {
    const range = cursor();
    range.deleteContents();
    const fragment = document.createDocumentFragment();
    fragment.append(...nodes);
    const last = fragment.lastChild;
    range.insertNode(fragment);
    if (last) { range.setStartAfter(last); range.collapse(true); }
    const selection = getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
    saved = range.cloneRange();
  };
  const tool = (label, command, value) => h("button", { type: "button", "aria-label": label, title: label,
    onclick: () => { editor.focus(); document.execCommand(command, false, value); } }, label);
  // images: shown from a blob: URL while editing, sent as inline attachments referenced by cid:
  const images = new Map(); // content id -> File
  const imageInput = h("input", { id: `${prefix}-image`, type: "file", accept: "image/png,image/jpeg,image/gif,image/webp", multiple: true, hidden: true,
    onchange: (event) => {
      for (const file of event.target.files) {
        if (!/^image\/(png|jpeg|gif|webp)$/.test(file.type)) { say(`${file.name}: not an image (PNG, JPEG, GIF or WebP).`); continue; }
        const cid = `img-${randomId()}@mailroom.web`;
        images.set(cid, file);
        insertNodes([h("img", { src: URL.createObjectURL(file), alt: file.name, dataset: { cid } })]);
      }
      event.target.value = "";
    } });
  const emoji = menuButton("Emoji", EMOJI.map(([character, name]) => [`${character} ${name}`, () => {
    cursor();
    document.execCommand("insertText", false, character);
    remember();
  }]), { menuClass: "emoji-grid" });
  const tools = h("div", { class: "editor-tools", role: "toolbar", "aria-label": "Formatting" },
    tool("Bold", "bold"), tool("Italic", "italic"), tool("Bulleted list", "insertUnorderedList"),
    tool("Numbered list", "insertOrderedList"),
    h("button", { type: "button", onclick: () => {
      const url = linkUrl.value.trim();
      if (/^https?:\/\//i.test(url)) { cursor(); document.execCommand("createLink", false, url); }
    } }, "Link"),
    h("button", { type: "button", onclick: () => imageInput.click() }, "Insert image"), imageInput,
    emoji);
  const linkUrl = h("input", { id: `${prefix}-link-url`, type: "url", placeholder: "https://", "aria-label": "Link address" });
  // templates (fill Subject and the message) and snippets (at the cursor), from outbound's API
  const templateSelect = h("select", { id: `${prefix}-template` });
  const snippetSelect = h("select", { id: `${prefix}-snippet` });
  const render = async (what, select) => {
    if (!select.value) return null;
    return api("POST", `/api/outbound/${what}/${encodeURIComponent(select.value)}/render`, context());
  };
  const useTemplate = h("button", { type: "button", onclick: async () => {
    try {
      const rendered = await render("templates", templateSelect);
      if (!rendered) return;
      editor.replaceChildren(...safeNodes(rendered.html, rendered.text));
      saved = null;
      if (subject && rendered.subject) subject.value = rendered.subject;
      say(subject || !rendered.subject ? "Template used." : "Template used (a reply keeps its subject).");
      cursor();
    } catch (error) { if (error.status !== 401) say(`Template: ${error.message}`); }
  } }, "Use template");
  const useSnippet = h("button", { type: "button", onclick: async () => {
    try {
      const rendered = await render("snippets", snippetSelect);
      if (!rendered) return;
      insertNodes(safeNodes(rendered.html, rendered.text));
      say("Snippet added.");
    } catch (error) { if (error.status !== 401) say(`Snippet: ${error.message}`); }
  } }, "Use snippet");
  const loadSaved = async () => {
    const where = context();
    const inboxId = where.inbox_id || (state.conversation && state.conversation.inbox_id) || "";
    const query = inboxId ? `?inbox_id=${encodeURIComponent(inboxId)}` : "";
    const [templates, snippets] = (await Promise.allSettled([api("GET", `/api/outbound/templates${query}`),
      api("GET", `/api/outbound/snippets${query}`)])).map((result, index) => {
      if (result.status === "fulfilled") return result.value;
      if (result.reason.status !== 401) say(`${index ? "Snippets" : "Templates"}: ${result.reason.message}`);
      return { items: [] };
    });
    const options = (items, none) => (items.length ? items.map((i) => h("option", { value: i.id },
      i.shortcut ? `${i.name} (/${i.shortcut})` : i.name)) : [h("option", { value: "" }, none)]);
    templateSelect.replaceChildren(...options(templates.items || [], "No templates"));
    snippetSelect.replaceChildren(...options(snippets.items || [], "No snippets"));
    useTemplate.disabled = !(templates.items || []).length;
    useSnippet.disabled = !(snippets.items || []).length;
  };
  const inserts = [];
  const insertList = h("ul", { class: "files", "aria-label": "Inserts" });
  const kind = h("select", { id: `${prefix}-insert-kind` }, INSERT_KINDS.map((k) => h("option", { value: k }, k)));
  const insertUrl = h("input", { id: `${prefix}-insert-url`, type: "url" });
  const insertTitle = h("input", { id: `${prefix}-insert-title` });
  const insertPanel = h("div", { class: "insert-panel", hidden: true },
    h("fieldset", {}, h("legend", {}, "Templates and snippets"),
      field("Template", templateSelect), useTemplate, field("Snippet", snippetSelect), useSnippet),
    h("fieldset", {}, h("legend", {}, "Insert a link"),
      field("Kind", kind), field("URL", insertUrl), field("Title", insertTitle),
      h("button", { type: "button", onclick: () => {
        if (!insertUrl.value.trim()) return;
        inserts.push({ kind: kind.value, url: insertUrl.value.trim(), title: insertTitle.value.trim() || null });
        insertList.append(h("li", {}, `${kind.value}: ${insertTitle.value.trim() || insertUrl.value.trim()}`));
        insertUrl.value = ""; insertTitle.value = ""; insertPanel.hidden = true;
        insertButton.setAttribute("aria-expanded", "false");
      } }, "Add insert")));
  const insertButton = h("button", { type: "button", class: "quiet", "aria-expanded": "false",
    onclick: () => {
      insertPanel.hidden = !insertPanel.hidden;
      insertButton.setAttribute("aria-expanded", String(!insertPanel.hidden));
      if (!insertPanel.hidden) loadSaved().catch((error) => { if (error.status !== 401) say(error.message); });
    } }, "Insert");
  const files = [];
  const fileList = h("ul", { class: "files", "aria-label": "Attached files" });
  const addFiles = (list) => { for (const file of list) { files.push(file); fileList.append(h("li", {}, `${file.name} (${Math.max(1, Math.round(file.size / 1024))} KB)`)); } };
  const fileInput = h("input", { id: `${prefix}-files`, type: "file", multiple: true, onchange: (e) => addFiles(e.target.files) });
  const attach = h("span", {}, h("label", { for: fileInput.id }, "Attach files"), " ", fileInput);
  const dropTarget = (form) => {
    form.classList.add("dropzone");
    form.addEventListener("dragover", (e) => { e.preventDefault(); form.classList.add("dragging"); });
    form.addEventListener("dragleave", () => form.classList.remove("dragging"));
    form.addEventListener("drop", (e) => { e.preventDefault(); form.classList.remove("dragging"); addFiles(e.dataTransfer.files); });
  };
  const body = async () => {
    // the images still in the message go as inline attachments, their src replaced by cid:
    const copy = editor.cloneNode(true);
    const inline = [];
    for (const img of copy.querySelectorAll("img")) {
      const cid = img.dataset.cid;
      if (!cid || !images.has(cid)) { img.remove(); continue; }
      img.setAttribute("src", `cid:${cid}`);
      img.removeAttribute("data-cid");
      if (!inline.includes(cid)) inline.push(cid);
    }
    const inlineParts = await Promise.all(inline.map(async (cid) => ({ ...(await readFile(images.get(cid))), inline: true, content_id: cid })));
    return { html: copy.innerHTML, text: editor.innerText, inserts,
      attachments: [...(await Promise.all(files.map(readFile))), ...inlineParts] };
  };
  const nodes = [tools, h("div", { class: "field" }, h("label", { for: linkUrl.id }, "Link"), linkUrl), editor,
    h("div", { class: "toolbar" }, insertButton, attach), insertPanel, insertList, fileList];
  // what is offered follows the inbox (Compose's From): reloaded when it changes while shown
  const reloadSaved = () => { if (!insertPanel.hidden) loadSaved().catch((error) => { if (error.status !== 401) say(error.message); }); };
  return { editor, nodes, body, dropTarget, reloadSaved };
}

async function openReply() {
  if (!canAct()) return;
  const area = $("reply-area");
  const c = state.conversation;
  let defaults;
  try {
    defaults = await api("GET", `/api/outbound/conversations/${encodeURIComponent(c.id)}/reply-defaults`);
  } catch (error) { say(error.message); return; }
  const to = contactSearch(h("input", { id: "reply-to", value: (defaults.to || []).map(person).join(", "), autocomplete: "off" }));
  const cc = contactSearch(h("input", { id: "reply-cc", value: (defaults.cc || []).map(person).join(", "), autocomplete: "off" }));
  const bcc = contactSearch(h("input", { id: "reply-bcc", autocomplete: "off" }));
  const from = h("select", { id: "reply-from" }, (defaults.identities && defaults.identities.length ? defaults.identities : [defaults.from])
    .map((a) => h("option", { value: a.email, selected: a.email === defaults.from.email }, person(a))));
  const toField = field("To", to);
  const ccField = field("Cc", cc, { hidden: !cc.value });
  const bccField = field("Bcc", bcc, { hidden: true });
  const fromField = field("From", from, { hidden: true });
  const reveal = (row, control) => () => { row.hidden = false; control.focus(); };
  const parts = editorParts("reply", { context: () => ({ conversation_id: c.id }) });
  const send = h("button", { type: "submit" }, "Send");
  const form = h("form", { class: "editor-form", "aria-label": "Reply", novalidate: true },
    h("div", { class: "toolbar" }, h("strong", {}, `Reply: ${defaults.subject || c.subject}`),
      menuButton("More", [["Cc", reveal(ccField, cc)], ["Bcc", reveal(bccField, bcc)], ["To", reveal(toField, to)], ["From", reveal(fromField, from)]])),
    toField, ccField, bccField, fromField, ...parts.nodes,
    h("div", { class: "toolbar" }, send, h("button", { type: "button", class: "quiet", onclick: () => closeReply() }, "Cancel")));
  parts.dropTarget(form);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    send.disabled = true;
    try {
      const email = await api("POST", `/api/outbound/conversations/${encodeURIComponent(c.id)}/replies`, {
        to: splitAddresses(to.value), cc: splitAddresses(cc.value), bcc: splitAddresses(bcc.value), from: from.value,
        ...(await parts.body()) });
      say(`Reply queued (${email.state}).`);
      closeReply();
      await openConversation(c.id, { keepFocus: true });
    } catch (error) {
      if (error.status !== 401) say(error.message);
      send.disabled = false;
    }
  });
  area.replaceChildren(form);
  parts.editor.focus();
}

function closeReply() {
  const area = $("reply-area");
  if (area && area.firstChild) { area.replaceChildren(); return true; }
  return false;
}

// --- compose ----------------------------------------------------------------------------------------

function openCompose() {
  const actable = state.inboxes.filter((i) => i.permissions && i.permissions.act);
  if (!actable.length) return;
  const preferred = actable.find((i) => i.id === state.inboxId) || actable[0];
  const from = h("select", { id: "compose-from" }, actable.flatMap((inbox) => (inbox.channels || []).map((channel) =>
    h("option", { value: `${inbox.id} ${channel.address}`, selected: inbox.id === preferred.id && channel.primary },
      `${channel.name ? `${channel.name} <${channel.address}>` : channel.address}${actable.length > 1 ? ` (${inbox.name})` : ""}`))));
  const to = contactSearch(h("input", { id: "compose-to", autocomplete: "off" }));
  const subject = h("input", { id: "compose-subject", autocomplete: "off", maxlength: "998" });
  const parts = editorParts("compose", { context: () => ({ inbox_id: from.value.split(" ")[0] }), subject });
  const send = h("button", { type: "submit" }, "Send");
  const form = $("compose-form");
  form.replaceChildren(field("To", to), field("From", from), field("Subject", subject), ...parts.nodes,
    h("div", { class: "toolbar" }, send, h("button", { type: "button", class: "quiet", onclick: () => closeCompose() }, "Cancel")));
  parts.dropTarget(form);
  from.addEventListener("change", parts.reloadSaved);
  form.onsubmit = async (event) => {
    event.preventDefault();
    const [inboxId, address] = from.value.split(" ");
    if (!splitAddresses(to.value).length) { say("Add at least one recipient in To."); to.focus(); return; }
    send.disabled = true;
    try {
      const email = await api("POST", `/api/outbound/inboxes/${encodeURIComponent(inboxId)}/emails`, {
        to: splitAddresses(to.value), from: address, subject: subject.value, ...(await parts.body()) });
      say(`Email queued (${email.state}).`);
      closeCompose();
    } catch (error) {
      if (error.status !== 401) say(error.message);
      send.disabled = false;
    }
  };
  $("compose").hidden = false;
  to.focus();
}

function closeCompose() {
  if ($("compose").hidden) return false;
  $("compose").hidden = true;
  $("compose-form").replaceChildren();
  $("compose-button").focus();
  return true;
}

// --- keyboard: j/k between conversations, r to reply, Esc closes a panel -----------------------------

function typing(target) {
  return target instanceof HTMLElement && (target.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName));
}

async function step(delta) {
  const items = visibleItems();
  if (!items.length) return;
  const index = items.findIndex((c) => c.id === state.selectedId);
  const next = items[Math.max(0, Math.min(items.length - 1, index === -1 ? 0 : index + delta))];
  await openConversation(next.id, { keepFocus: true });
  const button = $("conversation-list").querySelector(`button[data-id="${CSS.escape(next.id)}"]`);
  if (button) button.focus();
}

document.addEventListener("keydown", (event) => {
  if (!state.token || event.ctrlKey || event.metaKey || event.altKey) return;
  if (event.key === "Escape") {
    const menu = document.querySelector('[role="menu"]:not([hidden])');
    if (menu) { menu.hidden = true; return; }
    if (closeCompose() || closeReply()) event.preventDefault();
    return;
  }
  if (typing(event.target)) return;
  if (event.key === "j") { event.preventDefault(); step(1); }
  if (event.key === "k") { event.preventDefault(); step(-1); }
  if (event.key === "r" && state.conversation) { event.preventDefault(); openReply(); }
});

// --- wiring --------------------------------------------------------------------------------------

$("sign-in-form").addEventListener("submit", (event) => signIn(event).catch((error) => {
  $("sign-in-error").textContent = error.message;
}));
$("sign-out").addEventListener("click", () => signOut("Signed out."));
$("oidc-button").addEventListener("click", signInWithOrganisation);
$("compose-button").addEventListener("click", openCompose);
$("load-more").addEventListener("click", () => loadList({ more: true }));
$("search").addEventListener("input", (event) => { // server-side search, debounced
  state.search = event.target.value;
  clearTimeout(state.searchTimer);
  state.searchTimer = setTimeout(() => {
    loadList().catch((error) => { if (error.status !== 401) say(`Search: ${error.message}`); });
  }, SEARCH_DEBOUNCE_MS);
});
document.addEventListener("click", (event) => { // a click elsewhere closes an open menu
  for (const menu of document.querySelectorAll('[role="menu"]:not([hidden])')) {
    if (!menu.parentElement.contains(event.target)) {
      menu.hidden = true;
      menu.parentElement.querySelector("[aria-expanded]").setAttribute("aria-expanded", "false");
    }
  }
});
boot().catch((error) => { $("oidc-error").textContent = error.message; });
