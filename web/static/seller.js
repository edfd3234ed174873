// The seller's page: their auctions (GET /api/me/auctions) and, for a top bid
// below the reserve, the if-bid's answers (POST /api/auctions/{id}/offer).
// Plain DOM, no framework, nothing loaded from elsewhere; every control is a
// native button or form, so the page works with the keyboard alone.
(() => {
  "use strict";

  const $ = (id) => document.getElementById(id);
  const ui = {
    state: $("state"), signIn: $("sign-in"), token: $("token"), message: $("message"),
    deciding: $("deciding"), noneDeciding: $("none-deciding"), refresh: $("refresh"),
    rows: document.querySelector("#auctions tbody"), none: $("none"),
  };
  const STATUS_WORDS = {
    draft: "Draft (awaiting approval)", scheduled: "Scheduled", live: "Live", ended: "Ended",
    seller_decision: "Awaiting your decision", pending_settlement: "Sold, awaiting payment",
    settled: "Sold and paid", unsold: "Unsold", cancelled: "Cancelled", relisted: "Relisted",
  };
  const STATE_WORDS = {
    accepted: "Accepted", declined: "Declined", expired: "Expired without an answer",
  };
  const REFRESH_MS = 15000;

  let token = takeToken();
  let auctions = [];
  let busy = false;

  // A link signs in with `#token=…`: a fragment never leaves the browser; it is
  // removed from the address bar at once and kept for this tab only.
  function takeToken() {
    const fromLink = tokenFromAddress();
    if (fromLink) sessionStorage.setItem("d360-token", fromLink);
    return fromLink || sessionStorage.getItem("d360-token");
  }

  function tokenFromAddress() {
    const fragment = new URLSearchParams(location.hash.slice(1));
    const query = new URLSearchParams(location.search);
    if (!fragment.has("token") && !query.has("token")) return null;
    const value = fragment.get("token");
    fragment.delete("token");
    query.delete("token");
    const search = query.toString();
    const hash = fragment.toString();
    history.replaceState(history.state, "", location.pathname + (search ? "?" + search : "") + (hash ? "#" + hash : ""));
    return value;
  }

  function naira(kobo) {
    if (kobo === null || kobo === undefined) return "—";
    const whole = Math.floor(kobo / 100);
    const rest = String(kobo % 100).padStart(2, "0");
    return "₦" + whole.toLocaleString("en-NG") + "." + rest;
  }

  // "1,300,000" or "1300000.50" naira → kobo; null for anything else.
  function parseNaira(text) {
    const cleaned = text.replace(/[₦,\s]/g, "");
    const found = /^(\d{1,13})(?:\.(\d{1,2}))?$/.exec(cleaned);
    if (!found) return null;
    return Number(found[1]) * 100 + Number((found[2] || "").padEnd(2, "0"));
  }

  function clock(ms) {
    return new Date(ms).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
  }

  function left(ms) {
    const minutes = Math.max(0, Math.round((ms - Date.now()) / 60000));
    const hours = Math.floor(minutes / 60);
    return hours ? hours + " h " + (minutes % 60) + " min left" : minutes + " min left";
  }

  function vehicleName(summary) {
    const v = summary.vehicle;
    return [v.year, v.make, v.model].filter(Boolean).join(" ") || "Vehicle";
  }

  function say(kind, text) {
    ui.message.hidden = !text;
    ui.message.dataset.kind = kind;
    ui.message.textContent = text;
  }

  async function api(method, path, body) {
    const response = await fetch(path, {
      method,
      headers: { Authorization: "Bearer " + token, ...(body ? { "Content-Type": "application/json" } : {}) },
      body: body ? JSON.stringify(body) : undefined,
    });
    const data = await response.json().catch(() => null);
    if (!response.ok) {
      const error = (data && data.error) || { code: "http_" + response.status, message: "Something went wrong; try again." };
      throw Object.assign(new Error(error.message), { code: error.code, status: response.status });
    }
    return data;
  }

  async function load() {
    if (!token) {
      ui.signIn.hidden = false;
      ui.state.textContent = "Signed out";
      return;
    }
    try {
      const data = await api("GET", "/api/me/auctions?limit=200");
      auctions = data.auctions;
      ui.signIn.hidden = true;
      ui.state.textContent = "Updated " + new Date().toLocaleTimeString();
      render();
    } catch (err) {
      if (err.status === 401 || err.status === 403) {
        token = null;
        sessionStorage.removeItem("d360-token");
        ui.signIn.hidden = false;
        ui.state.textContent = "Signed out";
        say("error", err.status === 403 ? "This account does not sell auctions here." : "Sign in again: " + err.message);
      } else {
        ui.state.textContent = "Not updated";
        say("error", err.message);
      }
    }
  }

  function render() {
    const deciding = auctions.filter((item) => item.offer && item.offer.state === "open");
    ui.deciding.replaceChildren(...deciding.map(decisionItem));
    ui.noneDeciding.hidden = deciding.length > 0;
    ui.rows.replaceChildren(...auctions.map(row));
    ui.none.hidden = auctions.length > 0;
  }

  function element(tag, attributes, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes || {})) {
      if (name === "text") node.textContent = value;
      else if (name.startsWith("data-")) node.dataset[name.slice(5).replace(/-(\w)/g, (_, c) => c.toUpperCase())] = value;
      else node.setAttribute(name, value);
    }
    node.append(...children.filter((child) => child !== null));
    return node;
  }

  function fact(term, value) {
    return element("div", {}, element("dt", { text: term }), element("dd", { text: value }));
  }

  function decisionItem(item) {
    const summary = item.auction;
    const offer = item.offer;
    const id = summary.id;
    const last = offer.offers.length ? offer.offers[offer.offers.length - 1] : null;
    const bidderAmount = [...offer.offers].reverse().find((o) => o.by === "bidder");
    const onTable = bidderAmount ? bidderAmount.amount_kobo : offer.high_bid_kobo;
    const title = element("h3", { id: "title-" + id, text: vehicleName(summary) });
    const facts = element("dl", { class: "facts" },
      fact("Top bid", naira(offer.high_bid_kobo)),
      fact("Your reserve", naira(item.reserve_price_kobo)),
      fact("Counters left", String(offer.counters_left)),
      fact("Answer by", clock(offer.deadline_ms)));
    const history = offer.offers.length
      ? element("ol", { class: "counters", "aria-label": "Counter offers so far" },
        ...offer.offers.map((o) => element("li", {
          text: (o.by === "seller" ? "You" : "The bidder") + " countered " + naira(o.amount_kobo),
        })))
      : null;
    const turn = element("p", { class: "turn", "data-turn": offer.turn, "data-deadline": String(offer.deadline_ms) });
    turn.textContent = turnText(offer, last);
    const article = element("article", { class: "decision", "aria-labelledby": "title-" + id, "data-auction": id },
      title, facts, history, turn);
    if (offer.turn === "seller") article.append(actions(item, onTable));
    return element("li", {}, article);
  }

  function turnText(offer, last) {
    const until = " (" + left(offer.deadline_ms) + ")";
    if (offer.turn === "seller") {
      return last && last.by === "bidder"
        ? "The bidder countered " + naira(last.amount_kobo) + ": your answer" + until
        : "Your decision" + until;
    }
    return "Waiting for the bidder to answer your counter of " + naira(last ? last.amount_kobo : null) + until;
  }

  function actions(item, onTable) {
    const id = item.auction.id;
    const offer = item.offer;
    const accept = element("button", { type: "button", id: "accept-" + id, "data-action": "accept", "data-auction": id,
      text: "Accept " + naira(onTable) });
    const decline = element("button", { type: "button", id: "decline-" + id, class: "decline", "data-action": "decline",
      "data-auction": id, text: "Decline" });
    const box = element("div", { class: "actions" }, accept, decline);
    if (offer.counters_left > 0) {
      const inputId = "counter-" + id;
      const hint = "More than " + naira(offer.high_bid_kobo) + " and less than " + naira(item.reserve_price_kobo) + ".";
      const form = element("form", { class: "counter-form", "data-auction": id, novalidate: "" },
        element("label", { for: inputId, text: "Counter offer in naira" }),
        element("div", { class: "row" },
          element("input", { id: inputId, name: "amount", inputmode: "decimal", autocomplete: "off",
            "aria-describedby": inputId + "-hint" }),
          element("button", { type: "submit", id: "send-" + id, text: "Send counter" })),
        element("p", { id: inputId + "-hint", class: "hint", text: hint }));
      box.append(form);
    }
    return box;
  }

  function row(item) {
    const summary = item.auction;
    const offer = item.offer;
    let status = STATUS_WORDS[summary.status] || summary.status;
    if (offer && offer.state !== "open") status += " · if-bid " + (STATE_WORDS[offer.state] || offer.state).toLowerCase();
    const reserve = item.reserve_price_kobo === null ? "None"
      : naira(item.reserve_price_kobo) + (summary.reserve_met ? " (met)" : " (not met)");
    return element("tr", { "data-auction": summary.id },
      element("td", { text: vehicleName(summary) }),
      element("td", { text: status }),
      element("td", { class: "number", text: naira(offer && offer.price_kobo !== null ? offer.price_kobo : summary.current_price_kobo) }),
      element("td", { class: "number", text: String(summary.bid_count) }),
      element("td", { class: "number", text: String(summary.bidder_count) }),
      element("td", { text: reserve }));
  }

  async function answer(auctionId, body, done) {
    if (busy) return;
    busy = true;
    try {
      const offer = await api("POST", "/api/auctions/" + auctionId + "/offer", body);
      say("ok", done(offer));
    } catch (err) {
      say("error", err.message);
    } finally {
      busy = false;
      await load();
      // The answered controls are gone: the keyboard picks up at the message.
      ui.message.focus();
    }
  }

  ui.deciding.addEventListener("click", (event) => {
    const button = event.target.closest("button[data-action]");
    if (!button) return;
    const action = button.dataset.action;
    const item = auctions.find((a) => a.auction.id === button.dataset.auction);
    const name = item ? vehicleName(item.auction) : "the vehicle";
    answer(button.dataset.auction, { action }, (offer) => action === "accept"
      ? "Accepted: " + name + " is sold for " + naira(offer.price_kobo) + ". The buyer has 24 hours to pay."
      : "Declined: " + name + " is unsold. You may relist it.");
  });

  ui.deciding.addEventListener("submit", (event) => {
    const form = event.target.closest("form.counter-form");
    if (!form) return;
    event.preventDefault();
    const amount = parseNaira(form.elements.amount.value);
    if (amount === null) {
      say("error", "Enter the counter offer in naira, like 1,300,000.");
      form.elements.amount.focus();
      return;
    }
    answer(form.dataset.auction, { action: "counter", amount_kobo: amount },
      (offer) => "Counter of " + naira(amount) + " sent: the bidder has until " + clock(offer.deadline_ms) + " to answer.");
  });

  ui.refresh.addEventListener("click", () => {
    say("", "");
    load();
  });

  ui.signIn.addEventListener("submit", (event) => {
    event.preventDefault();
    const value = ui.token.value.trim();
    ui.token.value = "";
    if (!value) return;
    token = value;
    sessionStorage.setItem("d360-token", value);
    say("", "");
    load();
  });

  ui.message.tabIndex = -1;
  setInterval(() => {
    for (const turn of document.querySelectorAll(".turn[data-deadline]")) {
      const item = auctions.find((a) => a.auction.id === turn.closest("article").dataset.auction);
      if (item && item.offer) {
        const last = item.offer.offers.length ? item.offer.offers[item.offer.offers.length - 1] : null;
        turn.textContent = turnText(item.offer, last);
      }
    }
  }, 30000);
  setInterval(() => { if (!busy && document.activeElement === document.body) load(); }, REFRESH_MS);
  load();
})();
