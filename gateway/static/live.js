// Live draw page: follows one draw over MQTT on WebSockets, or over server-sent events from the
// gateway where the broker's WebSocket port is not reachable. Every message is rendered with
// textContent, never as HTML.
"use strict";

(() => {
  // A status never goes back: a retained state or `draws/current` that says less than what the
  // page already knows about a draw is older than that draw's progress (docs/live.md).
  const STATUS_RANK = { scheduled: 0, closed: 1, drawing: 2, completed: 3, cancelled: 3 };
  const STEP_STATUS = { started: "drawing", number_drawn: "drawing", winner: "drawing", finished: "completed", cancelled: "cancelled" };
  const BACKOFF_BASE_MS = 500;
  const BACKOFF_MAX_MS = 15000;
  const STATE_CACHE_SIZE = 20;

  const params = new URLSearchParams(window.location.search);
  const pinnedDrawId = document.body.dataset.drawId || null;
  if (params.get("tv") === "1") document.body.classList.add("tv");

  const $ = (id) => document.getElementById(id);
  const states = new Map(); // newest accepted DrawState per draw id, for a switch of `draws/current`
  const received = { current: 0, state: 0, live: 0 }; // messages per kind, read by the browser tests
  let config = null;
  let current = null;
  let view = emptyView(pinnedDrawId);

  // `contiguous` is the highest sequence up to which the page has every step (from the state or
  // live). `heardLive` is whether a live step arrived since the page last subscribed to the state.
  function emptyView(drawId) {
    return {
      drawId, state: null, steps: new Map(), winners: new Map(), stepStatus: null, sequence: 0,
      contiguous: 0, heardLive: false,
    };
  }

  function rank(status) {
    return status in STATUS_RANK ? STATUS_RANK[status] : -1;
  }

  function newer(a, b) {
    // Whether state `a` is at least as new as state `b`: sequence first, then updated_at.
    if (a.sequence !== b.sequence) return a.sequence > b.sequence;
    return Date.parse(a.updated_at) >= Date.parse(b.updated_at);
  }

  // ---- messages ----

  function onMessage(kind, text) {
    let data;
    try {
      data = JSON.parse(text);
    } catch (error) {
      console.warn("live message ignored, invalid JSON", kind, error);
      return;
    }
    if (kind in received) received[kind] += 1;
    if (kind === "current") onCurrent(data);
    else if (kind === "state") onState(data);
    else if (kind === "live") onStep(data);
    render();
    transport.syncState();
  }

  function onCurrent(message) {
    if (current && Date.parse(message.updated_at) < Date.parse(current.updated_at)) return;
    current = message;
    if (!pinnedDrawId && message.draw_id && message.draw_id !== view.drawId) follow(message.draw_id);
  }

  function onState(state) {
    const known = states.get(state.draw_id);
    if (known && !newer(state, known)) return;
    states.set(state.draw_id, state);
    if (states.size > STATE_CACHE_SIZE) states.delete(states.keys().next().value);
    if (state.draw_id === view.drawId) applyState(state);
  }

  function applyState(state) {
    view.state = state;
    view.sequence = Math.max(view.sequence, state.sequence);
    for (const step of state.numbers_drawn) view.steps.set(step.sequence, step);
    for (const winner of state.winners) view.winners.set(winner.position, winner);
    view.contiguous = Math.max(view.contiguous, state.sequence);
    advanceContiguous();
  }

  function advanceContiguous() {
    while (view.steps.has(view.contiguous + 1)) view.contiguous += 1;
  }

  function onStep(step) {
    if (step.draw_id !== view.drawId) return;
    view.steps.set(step.sequence, step);
    view.sequence = Math.max(view.sequence, step.sequence);
    view.heardLive = true;
    advanceContiguous();
    if (step.kind === "winner" && step.winner) view.winners.set(step.winner.position, step.winner);
    const status = STEP_STATUS[step.kind];
    if (status && rank(status) >= rank(view.stepStatus)) view.stepStatus = status;
  }

  function follow(drawId) {
    const previous = view.drawId;
    view = emptyView(drawId);
    const cached = states.get(drawId);
    if (cached) applyState(cached);
    transport.follow(previous, drawId);
  }

  function shownStatus() {
    // The furthest status any source reports for this draw.
    let status = view.state ? view.state.status : null;
    const candidates = [view.stepStatus];
    if (current && current.draw_id === view.drawId) candidates.push(current.status);
    for (const candidate of candidates) {
      if (candidate && rank(candidate) > rank(status)) status = candidate;
    }
    return status;
  }

  // Whether the page still needs `draws/{id}/state` of the draw it shows. While a draw runs, the
  // live steps carry every number and winner, so a page that has a state and every step after it
  // leaves the state topic, which grows with each number. Every (re)subscription brings the
  // retained state again.
  function needsState() {
    const state = view.state;
    if (!view.drawId) return false;
    if (!state) return true;
    // A completed or cancelled state is final: nothing in it changes any more.
    if (state.status === "completed" || state.status === "cancelled") return false;
    // Outside a running draw the state changes without a live step: at the cut-off before it, and
    // with the revealed seed after the `finished` step.
    if (shownStatus() !== "drawing") return true;
    // A step published just before the page subscribed can be missing from the retained state it
    // received, and the state published after that step then follows. A live step that leaves no
    // gap proves that nothing before it is missing.
    return !view.heardLive || view.contiguous < view.sequence;
  }

  // ---- rendering ----

  function setText(id, text) {
    $(id).textContent = text;
  }

  function replaceItems(list, items) {
    list.replaceChildren(...items);
  }

  function item(text, attributes = {}) {
    const li = document.createElement("li");
    li.textContent = text;
    for (const [name, value] of Object.entries(attributes)) li.setAttribute(name, value);
    return li;
  }

  function render() {
    const state = view.state;
    const status = shownStatus();
    document.body.dataset.status = status || "";

    if (!view.drawId) {
      setText("title", "Nenhum sorteio programado no momento");
    } else if (state) {
      setText("title", state.title);
    }
    renderBadge(status);
    renderCountdown(status);

    const prizes = state ? state.prizes : [];
    replaceItems($("prizes"), prizes.map((prize) => item(`${prize.position}º prêmio: ${prize.description}`)));

    const numbers = [...view.steps.values()]
      .filter((step) => step.kind === "number_drawn")
      .sort((a, b) => a.sequence - b.sequence);
    replaceItems($("numbers"), numbers.map((step) => item(step.number_display || String(step.number), { "data-number": String(step.number) })));
    $("numbers-empty").hidden = numbers.length > 0;

    const winners = [...view.winners.values()].sort((a, b) => a.position - b.position);
    replaceItems($("winners"), winners.map((winner) => winnerItem(winner, prizes)));
    $("winners-empty").hidden = winners.length > 0;

    setText("commitment", state ? state.commitment : "—");
    setText("seed", state && state.seed ? state.seed : "revelada ao fim do sorteio");
    if (view.drawId) {
      $("verify").href = state && state.verify_url ? state.verify_url : `/v1/draws/${view.drawId}/audit`;
      setText("verify-command", `festival draw verify ${view.drawId}`);
    }
  }

  function winnerItem(winner, prizes) {
    const prize = prizes.find((candidate) => candidate.position === winner.position);
    const li = item("", { "data-position": String(winner.position) });
    const name = document.createElement("span");
    name.className = "winner-name";
    name.textContent = winner.display_name;
    li.append(name, ` · ${winner.position}º prêmio${prize ? ` (${prize.description})` : ""} · `, unbroken(`número ${winner.number_display}`));
    if (winner.cpf_masked) li.append(" · ", unbroken(`CPF ${winner.cpf_masked}`));
    return li;
  }

  // Keeps a number such as "00-46490" or a masked CPF on one line: browsers may break at a hyphen.
  function unbroken(text) {
    const span = document.createElement("span");
    span.className = "unbroken";
    span.textContent = text;
    return span;
  }

  function renderBadge(status) {
    const labels = {
      scheduled: "Próximo sorteio",
      closed: "Inscrições encerradas",
      drawing: "Ao vivo",
      completed: "Resultado final",
      cancelled: "Sorteio cancelado",
    };
    $("badge").dataset.live = String(status === "drawing");
    setText("badge", labels[status] || "Aguardando sorteio");
  }

  function renderCountdown(status) {
    const state = view.state;
    if (status === "completed") return setText("countdown", "Sorteio encerrado");
    if (status === "cancelled") return setText("countdown", "");
    if (status === "drawing") return setText("countdown", "Sorteando agora");
    if (!state) return setText("countdown", "");

    const seconds = Math.floor((Date.parse(state.scheduled_at) - Date.now()) / 1000);
    if (seconds <= 0) return setText("countdown", "O sorteio começa em instantes");
    const days = Math.floor(seconds / 86400);
    const clock = [Math.floor(seconds / 3600) % 24, Math.floor(seconds / 60) % 60, seconds % 60]
      .map((part) => String(part).padStart(2, "0"))
      .join(":");
    setText("countdown", `Começa em ${days > 0 ? `${days} d ` : ""}${clock}`);
  }

  function setConnection(state, text) {
    const element = $("connection");
    element.dataset.state = state;
    element.dataset.transport = transport.name || "";
    element.textContent = text;
  }

  // ---- reconnection: exponential backoff with equal jitter, driven here, not by mqtt.js ----

  const backoff = { attempt: 0, timer: null };

  function scheduleReconnect() {
    if (backoff.timer) return;
    const ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** backoff.attempt);
    const delay = ceiling / 2 + Math.random() * (ceiling / 2);
    backoff.attempt += 1;
    setConnection("reconnecting", `Conexão perdida. Reconectando… (tentativa ${backoff.attempt})`);
    backoff.timer = window.setTimeout(() => {
      backoff.timer = null;
      transport.connect();
    }, delay);
  }

  function connected(label) {
    backoff.attempt = 0;
    setConnection("online", label);
  }

  // ---- transports ----

  const transport = {
    name: null,
    connect() {},
    follow() {},
    syncState() {},
    stateDrawId: null, // the draw whose `state` topic the page subscribes to now, if any
    stateUnsubscribes: 0, // UNSUBACKs for a `state` topic, read by the browser tests
  };

  function stateTopic(drawId) {
    return `${config.topic_root}/draws/${drawId}/state`;
  }

  function liveTopic(drawId) {
    return `${config.topic_root}/draws/${drawId}/live`;
  }

  function kindOf(topic) {
    const parts = topic.slice(config.topic_root.length + 1).split("/");
    if (parts.length === 2 && parts[1] === "current") return "current";
    return parts[2];
  }

  function useMqtt() {
    let client = null;
    let everConnected = false;
    transport.name = "mqtt";

    // A failed subscription or unsubscription leaves the page unsure of what it receives, so a
    // new connection subscribes from scratch.
    const restartOnError = (attempt, action) => (error) => {
      if (!error) return;
      console.warn(`mqtt ${action} failed`, error.message);
      attempt.end(true);
    };

    transport.connect = () => {
      const settings = config.mqtt;
      const attempt = window.mqtt.connect(settings.url, {
        username: settings.username || undefined,
        password: settings.password || undefined,
        clientId: `tela-${Math.random().toString(16).slice(2, 14)}`,
        clean: true,
        keepalive: 15,
        connectTimeout: 5000,
        reconnectPeriod: 0,
        resubscribe: false,
      });
      client = attempt;
      attempt.on("connect", () => {
        everConnected = true;
        // Retained messages arrive on every new subscription, which resynchronises the page: a
        // new connection therefore always subscribes to the state again.
        // The page shows itself live only once the broker confirmed the subscription, because a
        // step published between the connection and the SUBACK would not reach it.
        const drawId = view.drawId;
        const topics = [`${config.topic_root}/draws/current`];
        if (drawId) topics.push(stateTopic(drawId), liveTopic(drawId));
        transport.stateDrawId = drawId;
        view.heardLive = false;
        attempt.subscribe(topics, { qos: 1 }, (error) => {
          if (error) {
            console.warn("mqtt subscribe failed", error.message);
            attempt.end(true);
            return;
          }
          connected("Conectado ao vivo");
        });
      });
      attempt.on("message", (topic, payload) => {
        if (payload.length > 0) onMessage(kindOf(topic), payload.toString());
      });
      attempt.on("error", (error) => console.warn("mqtt error", error.message));
      attempt.on("close", () => {
        if (client !== attempt) return;
        client = null;
        transport.stateDrawId = null;
        attempt.end(true);
        if (!everConnected) {
          console.warn("broker WebSocket not reachable, switching to server-sent events");
          useSse();
        }
        scheduleReconnect();
      });
    };

    transport.follow = (previous, drawId) => {
      if (!client || !client.connected) return;
      const attempt = client;
      if (previous) {
        const topics = [liveTopic(previous)];
        if (transport.stateDrawId === previous) topics.push(stateTopic(previous));
        attempt.unsubscribe(topics, restartOnError(attempt, "unsubscribe"));
      }
      transport.stateDrawId = drawId;
      attempt.subscribe([stateTopic(drawId), liveTopic(drawId)], { qos: 1 }, restartOnError(attempt, "subscribe"));
    };

    // Subscribes to or leaves the state topic of the draw shown, as `needsState` decides.
    transport.syncState = () => {
      if (!client || !client.connected) return;
      const attempt = client;
      const needed = needsState() ? view.drawId : null;
      const subscribed = transport.stateDrawId;
      if (needed === subscribed) return;

      if (subscribed) {
        attempt.unsubscribe(stateTopic(subscribed), (error) => {
          if (error) return restartOnError(attempt, "unsubscribe")(error);
          transport.stateUnsubscribes += 1;
        });
      }
      transport.stateDrawId = needed;
      if (needed) {
        view.heardLive = false;
        attempt.subscribe(stateTopic(needed), { qos: 1 }, restartOnError(attempt, "subscribe"));
      }
    };
  }

  function useSse() {
    let source = null;
    transport.name = "sse";

    transport.connect = () => {
      const url = pinnedDrawId ? `/v1/draws/${pinnedDrawId}/events` : "/ao-vivo/eventos";
      const attempt = new EventSource(url);
      source = attempt;
      const drop = () => {
        if (source !== attempt) return;
        source = null;
        attempt.close();
        scheduleReconnect();
      };
      attempt.addEventListener("open", () => connected("Conectado ao vivo (via servidor)"));
      for (const kind of ["current", "state", "live"]) {
        attempt.addEventListener(kind, (event) => onMessage(kind, event.data));
      }
      attempt.addEventListener("broker_error", drop);
      attempt.onerror = drop;
    };

    // The stream without a draw id already carries every draw's messages.
    transport.follow = () => {};
  }

  async function start() {
    render();
    setConnection("connecting", "Conectando…");
    window.setInterval(() => renderCountdown(shownStatus()), 1000);
    try {
      const response = await fetch("/ao-vivo/config.json", { cache: "no-store" });
      config = await response.json();
    } catch (error) {
      console.warn("live config not loaded", error);
      config = { topic_root: "festival/v1", mqtt: null };
    }

    const wantsSse = params.get("transporte") === "sse";
    if (wantsSse || !config.mqtt || !window.mqtt) useSse();
    else useMqtt();
    transport.connect();
  }

  // Read by the browser tests.
  window.liveScreen = {
    get view() { return view; },
    get transport() { return transport.name; },
    get stateDrawId() { return transport.stateDrawId; },
    get stateUnsubscribes() { return transport.stateUnsubscribes; },
    received,
  };
  start();
})();
