// The auction room: one WebSocket to /ws/auctions/{id} (API.md), no libraries.
// Amounts travel in kobo and show in naira; the countdown runs on the server's
// clock (an offset kept from ping/pong); a lost socket reconnects with backoff,
// and a gap in `seq` asks the server to `resume`.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const ui = {
    connection: $("connection"), price: $("price"), you: $("you"), countdown: $("countdown"),
    bidderCount: $("bidder-count"), bidCount: $("bid-count"), reserve: $("reserve"),
    notice: $("notice"), signIn: $("sign-in"), token: $("token"), who: $("who"),
    form: $("bid-form"), amount: $("amount"), button: $("bid-button"), minHint: $("min-hint"),
    message: $("bid-message"), feed: $("feed"), feedEmpty: $("feed-empty"),
  };

  const auctionId = decodeURIComponent(location.pathname.split("/").filter(Boolean).pop() || "");
  const STATUS_TEXT = {
    winning: "You are winning", outbid: "You have been outbid",
    won: "You won this auction", lost: "This auction went to another bidder",
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
  let amountEdited = false;
  let clockOffset = 0; // server time − local time, ms
  let bestRtt = Infinity;
  let pingTimer = null;
  let feedBids = []; // newest first, as shown

  // ---- money and time ----------------------------------------------------------

  function naira(kobo) {
    const whole = Math.floor(kobo / 100);
    const rest = String(kobo % 100).padStart(2, "0");
    return "₦" + String(whole).replace(/\B(?=(\d{3})+(?!\d))/g, ",") + "." + rest;
  }

  function nairaInput(kobo) {
    const whole = String(Math.floor(kobo / 100)).replace(/\B(?=(\d{3})+(?!\d))/g, ",");
    return kobo % 100 ? whole + "." + String(kobo % 100).padStart(2, "0") : whole;
  }

  // "1,050,000" or "1050000.5" → kobo (whole numbers only, no floats on money); null if unreadable.
  function parseNaira(text) {
    const clean = text.replace(/[₦,\s]/g, "");
    const match = /^(\d{1,13})(?:\.(\d{1,2}))?$/.exec(clean);
    if (!match) return null;
    return Number(match[1]) * 100 + Number((match[2] || "").padEnd(2, "0"));
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
      const words = { live: "The auction is live.", cancelled: "This auction was cancelled.", ended: "Bidding has closed." };
      showNotice(words[message.status] || "The auction is " + message.status + ".");
    },

    ended(message) {
      if (!inOrder(message)) return;
      auction.status = "ended";
      renderAuction(false);
      showNotice(message.result === "sold"
        ? "Sold for " + naira(message.final_price_kobo) + (message.winner ? " to " + message.winner : "") + "."
        : "The auction ended without a sale.");
    },

    you(message) {
      if (you) you.status = message.status;
      renderYou(message.status);
    },

    bid_result(message) {
      if (pendingBid && pendingBid.client_bid_id === message.client_bid_id) pendingBid = null;
      if (message.status === "accepted") {
        learnHandle(message.bid.amount_kobo);
        say("ok", "Bid placed: " + naira(message.bid.amount_kobo) + ".");
        amountEdited = false;
      } else {
        say("error", message.message); // the server's sentence, as it is
      }
      updateForm();
    },

    error(message) {
      pendingBid = null; // a refused frame: the bid (if it was one) was not placed
      if (message.code === "unauthenticated" && token) {
        token = null;
        sessionStorage.removeItem("d360-token");
        signedIn = false;
        you = null;
        renderYou(null);
      }
      updateForm();
      say("error", message.message);
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
    ui.you.textContent = status ? STATUS_TEXT[status] : "";
    ui.you.hidden = !status;
    ui.who.hidden = !(you && signedIn);
    ui.who.textContent = you && you.handle ? "You bid here as " + you.handle + "." : "Signed in: you have not bid here yet.";
  }

  // The room's events are anonymous; our own accepted bid tells us our handle.
  function learnHandle(amount) {
    if (!you || you.handle) return;
    const ours = feedBids.find((bid) => bid.amount_kobo === amount && !bid.is_platform_bid);
    if (!ours) return;
    you.handle = ours.bidder;
    renderYou(you.status);
    renderFeed(feedBids);
  }

  function renderFeed(bids) {
    feedBids = bids.slice(0, FEED_MAX);
    ui.feed.replaceChildren(...feedBids.map(feedItem));
    ui.feedEmpty.hidden = feedBids.length > 0;
  }

  // One new item (a live region announces additions: re-rendering would re-read all).
  function addBid(bid) {
    feedBids = [bid, ...feedBids].slice(0, FEED_MAX);
    ui.feed.prepend(feedItem(bid));
    while (ui.feed.children.length > FEED_MAX) ui.feed.lastElementChild.remove();
    ui.feedEmpty.hidden = true;
  }

  function feedItem(bid) {
    const item = document.createElement("li");
    const mine = you && you.handle && bid.bidder === you.handle;
    item.className = bid.is_platform_bid ? "platform" : mine ? "mine" : "";
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
    item.append(amount, when, who);
    item.setAttribute("aria-label", naira(bid.amount_kobo) + " by " + who.textContent);
    return item;
  }

  function showNotice(text) {
    ui.notice.textContent = text;
    ui.notice.hidden = false;
  }

  function say(kind, text) {
    ui.message.dataset.kind = kind;
    ui.message.textContent = text;
  }

  function open() {
    return auction && auction.status === "live" && auction.end_time_ms > serverNow();
  }

  function updateForm() {
    const canBid = Boolean(socket && signedIn && open());
    ui.amount.disabled = !canBid;
    ui.button.disabled = !canBid || pendingBid !== null;
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
      if (!ui.button.disabled) updateForm();
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
