// The auction room: one WebSocket to /ws/auctions/{id} (API.md), no libraries.
// Amounts travel in kobo and show in naira; the countdown runs on the server's
// clock (an offset kept from ping/pong); a lost socket reconnects with backoff,
// and a gap in `seq` asks the server to `resume`. A signed-in bidder may also set
// a maximum (RULES.md): it is private, shown to its owner alone from `you`.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const ui = {
    connection: $("connection"), price: $("price"), you: $("you"), countdown: $("countdown"),
    bidderCount: $("bidder-count"), bidCount: $("bid-count"), reserve: $("reserve"),
    notice: $("notice"), signIn: $("sign-in"), token: $("token"), who: $("who"),
    form: $("bid-form"), amount: $("amount"), button: $("bid-button"), minHint: $("min-hint"),
    message: $("bid-message"), feed: $("feed"), feedEmpty: $("feed-empty"),
    vehicle: $("vehicle"), vehicleTitle: $("vehicle-title"), vehicleFacts: $("vehicle-facts"),
    buyingPower: $("buying-power"), maxCard: $("max-card"), maxCurrent: $("max-current"),
    maxForm: $("max-form"), maxAmount: $("max-amount"), maxButton: $("max-button"),
    maxMessage: $("max-message"),
  };

  const auctionId = decodeURIComponent(location.pathname.split("/").filter(Boolean).pop() || "");
  const STATUS_TEXT = {
    winning: "You are winning", outbid: "You have been outbid",
    won: "You won this auction", lost: "This auction went to another bidder",
    seller_decision: "Your bid is with the seller to decide",
  };
  const CONDITION_TEXT = {
    salvage: "Salvage", rough: "Rough", clean: "Clean", excellent: "Excellent", upgraded: "Upgraded",
  };
  const FEED_MAX = 50;
  const GUEST_LINE = "Sign in to bid; anyone can watch.";

  let socket = null;
  let attempts = 0;
  let lastSeq = null; // the last room event applied
  let resuming = null; // {since, timer} while waiting for a resume to fill a gap
  let auction = null; // snapshot.auction, kept current by events
  let you = null; // snapshot.you
  let token = takeToken();
  let signedIn = false;
  let pendingBid = null; // sent, no bid_result yet: sent again (same id) after a reconnect
  let pendingMax = null; // the same for a maximum
  let ownAmount = null; // {amount, proxy}: a bid of ours the feed has not shown yet (learnHandle)
  let amountEdited = false;
  let clockOffset = 0; // server time − local time, ms
  let bestRtt = Infinity;
  let pingTimer = null;
  let feedBids = []; // newest first, as shown

  // ---- money and time ----------------------------------------------------------

  // Kobo are split into naira and kobo by their digits, never by dividing: every
  // amount (below 10^15) is an exact integer and stays one.
  function nairaParts(kobo) {
    const digits = String(kobo).padStart(3, "0");
    return { whole: thousands(digits.slice(0, -2)), kobo: digits.slice(-2) };
  }

  function thousands(digits) {
    return String(digits).replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  }

  function naira(kobo) {
    const parts = nairaParts(kobo);
    return "₦" + parts.whole + "." + parts.kobo;
  }

  function nairaInput(kobo) {
    const parts = nairaParts(kobo);
    return parts.kobo === "00" ? parts.whole : parts.whole + "." + parts.kobo;
  }

  // "1,050,000" or "1050000.5" → kobo, read from its digits (no floats on money); null if unreadable.
  function parseNaira(text) {
    const clean = text.replace(/[₦,\s]/g, "");
    const match = /^(\d{1,13})(?:\.(\d{1,2}))?$/.exec(clean);
    if (!match) return null;
    return Number(match[1] + (match[2] || "").padEnd(2, "0"));
  }

  const serverNow = () => Date.now() + clockOffset;

  function remaining(ms) {
    if (ms <= 0) return "0:00";
    const s = Math.floor(ms / 1000);
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
    const mm = h ? String(m).padStart(2, "0") : String(m);
    return (h ? h + ":" : "") + mm + ":" + String(sec).padStart(2, "0");
  }

  function clockTime(ms) {
    return new Date(ms - clockOffset).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false });
  }

  // ---- the socket -------------------------------------------------------------------

  // A link signs in with `#token=…`: a fragment never leaves the browser, so no
  // proxy or access log records it. It leaves the address bar (and so history and
  // bookmarks) at once; the token is kept for this tab only.
  function takeToken() {
    const fromLink = tokenFromAddress();
    if (fromLink) sessionStorage.setItem("d360-token", fromLink);
    return fromLink || sessionStorage.getItem("d360-token");
  }

  // The fragment's token, if any. A token leaves the address bar either way, but
  // one in the query string (`?token=`) does not sign in: it was sent to the
  // server and could be logged on the way, so links must not be made like that.
  function tokenFromAddress() {
    const fragment = new URLSearchParams(location.hash.slice(1));
    const query = new URLSearchParams(location.search);
    if (!fragment.has("token") && !query.has("token")) return null;
    const value = fragment.get("token");
    fragment.delete("token");
    query.delete("token");
    const search = query.toString(), hash = fragment.toString();
    history.replaceState(history.state, "", location.pathname + (search ? "?" + search : "") + (hash ? "#" + hash : ""));
    return value;
  }

  function connect() {
    setConnection("connecting", attempts ? "Reconnecting…" : "Connecting…");
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    socket = new WebSocket(scheme + location.host + "/ws/auctions/" + encodeURIComponent(auctionId));
    socket.onopen = () => {
      if (token) send({ type: "auth", token: token });
      ping();
      clearInterval(pingTimer);
      pingTimer = setInterval(ping, 15000);
    };
    socket.onmessage = (event) => {
      let message;
      try { message = JSON.parse(event.data); } catch (err) { return; }
      const handler = handlers[message.type];
      if (handler) handler(message);
    };
    socket.onclose = (event) => {
      clearInterval(pingTimer);
      socket = null;
      signedIn = false;
      updateForm();
      attempts += 1;
      // Backoff with jitter: 0.5 s, 1 s, 2 s … up to 15 s.
      const delay = Math.min(15000, 500 * 2 ** Math.min(attempts - 1, 5)) * (0.75 + Math.random() / 2);
      const why = event.code === 1013 ? "Connection too slow." : event.code === 1001 ? "Server restarting." : "Connection lost.";
      setConnection("lost", why + " Reconnecting in " + Math.ceil(delay / 1000) + " s…");
      setTimeout(connect, delay);
    };
  }

  function send(message) {
    if (socket && socket.readyState === WebSocket.OPEN) {
      socket.send(JSON.stringify(message));
      return true;
    }
    return false;
  }

  function ping() {
    send({ type: "ping", client_time_ms: Date.now() });
  }

  function setConnection(state, text) {
    ui.connection.dataset.state = state;
    ui.connection.textContent = text;
  }

  // ---- messages -----------------------------------------------------------------------

  const handlers = {
    snapshot(message) {
      attempts = 0;
      setConnection("live", "Live");
      clearResume();
      lastSeq = message.seq;
      auction = message.auction;
      clockOffset = bestRtt === Infinity ? message.server_time_ms - Date.now() : clockOffset;
      you = message.you;
      signedIn = you !== null;
      if (signedIn && pendingBid) send(pendingBid); // same client_bid_id: the first outcome
      if (signedIn && pendingMax) send(pendingMax);
      renderVehicle(message.vehicle);
      renderFeed(message.recent_bids);
      renderAuction(false);
      renderYou(you && you.status);
      updateForm();
    },

    bid(message) {
      if (!inOrder(message)) return;
      auction.current_price_kobo = message.amount_kobo;
      auction.min_next_bid_kobo = message.min_next_bid_kobo;
      auction.end_time_ms = message.end_time_ms;
      auction.bid_count = message.bid_count;
      auction.bidder_count = message.bidder_count;
      if ("reserve_met" in message) auction.reserve_met = message.reserve_met;
      addBid(message);
      renderAuction(true);
      if (message.extended) showNotice("A late bid extended the auction to " + clockTime(message.end_time_ms) + ".");
    },

    state(message) {
      if (!inOrder(message)) return;
      auction.status = message.status;
      auction.end_time_ms = message.end_time_ms;
      renderAuction(false);
      const words = {
        live: "The auction is live.",
        cancelled: "This auction was cancelled.",
        ended: "Bidding has closed.",
        pending_settlement: "The seller accepted: the auction is sold.",
        settled: "The seller accepted: the auction is sold.",
        unsold: "The auction ended without a sale.",
      };
      showNotice(words[message.status] || "The auction is " + message.status + ".");
    },

    ended(message) {
      if (!inOrder(message)) return;
      auction.status = message.result === "seller_decision" ? "seller_decision" : "ended";
      renderAuction(false);
      const outcomes = {
        sold: "Sold for " + naira(message.final_price_kobo) + (message.winner ? " to " + message.winner : "") + ".",
        seller_decision: "Bidding closed below the reserve: the seller is deciding on the top bid of "
          + naira(message.final_price_kobo) + ".",
      };
      showNotice(outcomes[message.result] || "The auction ended without a sale.");
    },

    you(message) {
      if (you) {
        you.status = message.status;
        // Fields a frame leaves out keep their last value.
        if ("max_kobo" in message) you.max_kobo = message.max_kobo;
        if ("available_kobo" in message) you.available_kobo = message.available_kobo;
      }
      // "It leads" was true when said; once passed, the line under the form says so.
      if (message.status === "outbid" && ui.maxMessage.dataset.leads === "true") sayMax("", "");
      renderYou(message.status);
    },

    bid_result(message) {
      if (message.max || (pendingMax && pendingMax.client_bid_id === message.client_bid_id)) {
        maxResult(message);
        return;
      }
      if (pendingBid && pendingBid.client_bid_id === message.client_bid_id) pendingBid = null;
      if (message.status === "accepted") {
        learnHandle(message.bid.amount_kobo, false);
        say("ok", "Bid placed: " + naira(message.bid.amount_kobo) + ".");
        amountEdited = false;
      } else {
        say("error", message.message); // the server's sentence, as it is
      }
      updateForm();
    },

    error(message) {
      // A refused frame: the bid or maximum (if it was one) was not placed. The
      // sentence goes by the form that waited for an answer.
      const aboutMax = pendingMax !== null && pendingBid === null;
      pendingMax = null;
      pendingBid = null;
      if (message.code === "unauthenticated" && token) {
        token = null;
        sessionStorage.removeItem("d360-token");
        signedIn = false;
        you = null;
        renderYou(null);
      }
      updateForm();
      if (aboutMax) sayMax("error", message.message);
      else say("error", message.message);
    },

    pong(message) {
      const now = Date.now();
      const rtt = now - message.client_time_ms;
      // The fastest round trip gives the best estimate of the server's clock.
      if (rtt <= bestRtt) {
        bestRtt = rtt;
        clockOffset = message.server_time_ms - (message.client_time_ms + rtt / 2);
      }
    },
  };

  // Room events must follow each other by one: a gap asks the server for what was
  // missed (it replays, or sends a fresh snapshot); until then later events wait.
  function inOrder(message) {
    if (lastSeq === null || message.seq <= lastSeq) return false;
    if (message.seq === lastSeq + 1) {
      lastSeq = message.seq;
      clearResume();
      return true;
    }
    if (!resuming) {
      send({ type: "resume", last_seq: lastSeq });
      resuming = { timer: setTimeout(() => { if (socket) socket.close(); }, 5000) };
    }
    return false;
  }

  function clearResume() {
    if (resuming) clearTimeout(resuming.timer);
    resuming = null;
  }

  // ---- rendering --------------------------------------------------------------------

  function renderAuction(flash) {
    if (!auction) return;
    ui.price.textContent = auction.current_price_kobo === null
      ? "No bids yet · starts at " + naira(auction.min_next_bid_kobo)
      : naira(auction.current_price_kobo);
    if (flash) {
      ui.price.dataset.flash = "false";
      void ui.price.offsetWidth; // restart the animation
      ui.price.dataset.flash = "true";
    }
    ui.bidderCount.textContent = String(auction.bidder_count);
    ui.bidCount.textContent = String(auction.bid_count);
    ui.reserve.textContent = auction.reserve_met === null ? "None" : auction.reserve_met ? "Met" : "Not met yet";
    ui.minHint.textContent = "Minimum next bid: " + naira(auction.min_next_bid_kobo);
    const current = parseNaira(ui.amount.value);
    if (!amountEdited || current === null || current < auction.min_next_bid_kobo) {
      ui.amount.value = nairaInput(auction.min_next_bid_kobo);
      amountEdited = false;
    }
    tick();
    updateForm();
  }

  function renderYou(status) {
    ui.you.dataset.status = status || "";
    ui.you.textContent = status ? STATUS_TEXT[status] || "" : "";
    ui.you.hidden = !ui.you.textContent;
    ui.who.hidden = !(you && signedIn);
    ui.who.textContent = you && you.handle ? "You bid here as " + you.handle + "." : "Signed in: you have not bid here yet.";
    renderPrivate();
  }

  // The room's events are anonymous; our own accepted bid tells us our handle: the
  // newest bid of its amount that is ours in kind (a maximum's bids are proxy
  // bids; a proxy's answer may equal the bid it answers). The bid event may come
  // after the result: then it is looked for as it arrives.
  function learnHandle(amount, proxy) {
    if (!you || you.handle) return;
    const ours = feedBids.find((bid) => isOwn(bid, { amount: amount, proxy: proxy }));
    if (!ours) {
      ownAmount = { amount: amount, proxy: proxy };
      return;
    }
    ownAmount = null;
    you.handle = ours.bidder;
    renderYou(you.status);
    renderFeed(feedBids);
  }

  function isOwn(bid, own) {
    return bid.amount_kobo === own.amount && !bid.is_platform_bid && Boolean(bid.is_proxy) === own.proxy;
  }

  function renderFeed(bids) {
    feedBids = bids.slice(0, FEED_MAX);
    ui.feed.replaceChildren(...feedBids.map(feedItem));
    ui.feedEmpty.hidden = feedBids.length > 0;
  }

  // One new item (a live region announces additions: re-rendering would re-read all).
  function addBid(bid) {
    if (you && !you.handle && ownAmount && isOwn(bid, ownAmount)) {
      you.handle = bid.bidder;
      ownAmount = null;
      feedBids = [bid, ...feedBids].slice(0, FEED_MAX);
      renderYou(you.status);
      renderFeed(feedBids);
      return;
    }
    feedBids = [bid, ...feedBids].slice(0, FEED_MAX);
    ui.feed.prepend(feedItem(bid));
    while (ui.feed.children.length > FEED_MAX) ui.feed.lastElementChild.remove();
    ui.feedEmpty.hidden = true;
  }

  function feedItem(bid) {
    const item = document.createElement("li");
    const mine = you && you.handle && bid.bidder === you.handle;
    item.className = bid.is_platform_bid ? "platform" : mine ? "mine" : "";
    item.dataset.proxy = String(Boolean(bid.is_proxy));
    const amount = document.createElement("span");
    amount.className = "amount";
    amount.textContent = naira(bid.amount_kobo);
    const when = document.createElement("time");
    when.className = "when";
    when.dateTime = new Date(bid.at_ms).toISOString();
    when.textContent = clockTime(bid.at_ms);
    const who = document.createElement("span");
    who.className = "who-bid";
    who.textContent = (bid.is_platform_bid ? "Reserve protection (platform bid)" : bid.bidder) + (mine ? " · you" : "");
    let label = naira(bid.amount_kobo) + " by " + who.textContent;
    if (bid.is_proxy) {
      // In words, not only colour: the engine placed it for a maximum.
      const tag = document.createElement("span");
      tag.className = "tag";
      tag.textContent = "Auto-bid";
      tag.title = "Placed automatically for a bidder's maximum";
      who.append(tag);
      label += ", an automatic bid for a maximum";
    }
    item.append(amount, when, who);
    item.setAttribute("aria-label", label);
    return item;
  }

  // The car on sale, from the snapshot's `vehicle`; a field the listing lacks is left out.
  function renderVehicle(vehicle) {
    if (!vehicle) {
      ui.vehicle.hidden = true;
      return;
    }
    const title = [vehicle.year, vehicle.make, vehicle.model].filter(present).join(" ");
    ui.vehicleTitle.textContent = title || "Vehicle";
    document.title = (title ? title + " · " : "") + "Live auction · Dealer360";
    const facts = [
      ["Body", vehicle.body_type, (text) => capitalise(text)],
      ["Mileage", vehicle.mileage_km, (km) => thousands(km) + " km"],
      ["Colour", vehicle.color, (text) => capitalise(text)],
      ["Condition", vehicle.condition, (text) => CONDITION_TEXT[text] || capitalise(text)],
      ["Location", vehicle.location, (text) => String(text), "wide"],
    ];
    ui.vehicleFacts.replaceChildren(...facts.filter((fact) => present(fact[1])).map(([name, value, show, kind]) => {
      const row = document.createElement("div");
      if (kind) row.className = kind;
      const term = document.createElement("dt");
      term.textContent = name;
      const detail = document.createElement("dd");
      detail.textContent = show(value);
      row.append(term, detail);
      return row;
    }));
    ui.vehicle.hidden = false;
  }

  function present(value) {
    return value !== null && value !== undefined && value !== "";
  }

  function capitalise(text) {
    const words = String(text).replace(/_/g, " ");
    return words.charAt(0).toUpperCase() + words.slice(1);
  }

  // What only this bidder sees: buying power left and their maximum.
  function renderPrivate() {
    const power = you && typeof you.available_kobo === "number" ? you.available_kobo : null;
    ui.buyingPower.hidden = power === null;
    if (power !== null) {
      const amount = document.createElement("strong");
      amount.textContent = naira(power);
      ui.buyingPower.replaceChildren("Your buying power: ", amount);
    }
    const max = you && typeof you.max_kobo === "number" ? you.max_kobo : null;
    if (max === null) {
      ui.maxCurrent.textContent = "You have not set a maximum.";
      delete ui.maxCurrent.dataset.leading;
      delete ui.maxCurrent.dataset.outbid;
      return;
    }
    const leading = you.status === "winning";
    ui.maxCurrent.dataset.leading = String(leading);
    ui.maxCurrent.dataset.outbid = String(you.status === "outbid");
    ui.maxCurrent.textContent = "Your maximum: " + naira(max) +
      (leading ? "\u00a0·\u00a0leading" : you.status === "outbid" ? "\u00a0·\u00a0outbid" : "");
  }

  function showNotice(text) {
    ui.notice.textContent = text;
    ui.notice.hidden = false;
  }

  function say(kind, text) {
    ui.message.dataset.kind = kind;
    ui.message.textContent = text;
  }

  function sayMax(kind, text) {
    ui.maxMessage.dataset.kind = kind;
    ui.maxMessage.dataset.leads = "false";
    ui.maxMessage.textContent = text;
  }

  function open() {
    return auction && auction.status === "live" && auction.end_time_ms > serverNow();
  }

  function updateForm() {
    const canBid = Boolean(socket && signedIn && open());
    ui.amount.disabled = !canBid;
    ui.button.disabled = !canBid || pendingBid !== null;
    // A maximum may be set before the start too (a pre-bid). Guests never see the
    // form; a bidder keeps it through a reconnect, disabled meanwhile.
    const canMax = Boolean(socket && signedIn && (open() || (auction && auction.status === "scheduled")));
    ui.maxCard.hidden = !(token && you);
    ui.maxAmount.disabled = !canMax;
    ui.maxButton.disabled = !canMax || pendingMax !== null;
    // Only a guest is asked to sign in: a page holding a token is signing in with
    // it, or signing in again after a reconnect.
    const guest = !token;
    ui.signIn.hidden = !guest;
    if (guest && !ui.message.textContent) say("", GUEST_LINE);
    if (!guest && ui.message.textContent === GUEST_LINE) say("", "");
  }

  function tick() {
    if (!auction) return;
    const left = auction.end_time_ms - serverNow();
    if (auction.status === "live" && left > 0) {
      ui.countdown.textContent = remaining(left);
      ui.countdown.dataset.soon = String(left < 120000);
    } else {
      ui.countdown.textContent = auction.status === "scheduled" ? "Not started" : "Ended";
      ui.countdown.dataset.soon = "false";
      if (!ui.button.disabled || (!ui.maxButton.disabled && auction.status !== "scheduled")) updateForm();
    }
  }

  // ---- the forms ------------------------------------------------------------------------

  ui.signIn.addEventListener("submit", (event) => {
    event.preventDefault();
    const value = ui.token.value.trim();
    ui.token.value = "";
    if (value) signIn(value);
  });

  // A sign-in link opened in this tab while it shows the room changes only the
  // fragment: the page is not loaded again, so it signs in here.
  window.addEventListener("hashchange", () => {
    const value = tokenFromAddress();
    if (value) signIn(value);
  });

  function signIn(value) {
    token = value;
    sessionStorage.setItem("d360-token", value);
    updateForm();
    if (!send({ type: "auth", token: value })) say("error", "Not connected yet; you will be signed in when the room reconnects.");
  }

  ui.amount.addEventListener("input", () => { amountEdited = true; });

  ui.form.addEventListener("submit", (event) => {
    event.preventDefault();
    const amount = parseNaira(ui.amount.value);
    if (amount === null || amount <= 0) {
      say("error", "Enter an amount in naira, like 1,550,000 or 1550000.50.");
      ui.amount.focus();
      return;
    }
    pendingBid = { type: "bid", amount_kobo: amount, client_bid_id: newBidId() };
    if (send(pendingBid)) say("", "Placing your bid of " + naira(amount) + "…");
    updateForm();
  });

  ui.maxForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const amount = parseNaira(ui.maxAmount.value);
    if (amount === null || amount <= 0) {
      sayMax("error", "Enter your maximum in naira, like 2,000,000 or 2000000.50.");
      ui.maxAmount.focus();
      return;
    }
    pendingMax = { type: "max", max_kobo: amount, client_bid_id: newBidId() };
    if (send(pendingMax)) sayMax("", "Setting your maximum of " + naira(amount) + "…");
    updateForm();
  });

  // The answer to our maximum: accepted, it is ours alone to see (and whether it
  // leads); refused, the server's sentence says why and nothing changed.
  function maxResult(message) {
    if (pendingMax && pendingMax.client_bid_id === message.client_bid_id) pendingMax = null;
    if (message.status === "accepted" && message.max) {
      const max = message.max;
      if (you) you.max_kobo = max.max_kobo;
      if (max.leading) learnHandle(max.price_kobo, true);
      const scheduled = auction && auction.status === "scheduled";
      sayMax("ok", "Your maximum: " + naira(max.max_kobo) + ". " + (max.leading
        ? (scheduled ? "It will lead when bidding opens, at " : "It leads, at ") + naira(max.price_kobo) + "."
        : "It does not lead: another bidder's maximum is at least as high. The price is now " +
          naira(max.price_kobo) + "."));
      ui.maxMessage.dataset.leads = String(max.leading);
      ui.maxAmount.value = "";
      renderYou(you && you.status);
    } else {
      sayMax("error", message.message); // the server's sentence, as it is
    }
    updateForm();
  }

  function newBidId() {
    const bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  if (!/^[0-9a-f-]{36}$/i.test(auctionId)) {
    setConnection("lost", "No auction here");
    showNotice("This address does not name an auction.");
    return;
  }
  setInterval(tick, 250);
  updateForm();
  connect();
})();
