// Operator dashboard: prompts for the operator token once, keeps it in this tab's sessionStorage and
// polls /v1/dashboard with it as a bearer token. Every value is rendered with textContent, never as HTML.
"use strict";

(() => {
  const API_PATH = "/v1/dashboard";
  const TOKEN_KEY = "festival.operatorToken";
  const POLL_MS = 5000;
  const REQUEST_TIMEOUT_MS = 8000;

  const PARTNERS = { nix: "NIX", redetv: "REDETV!PLUS" };
  const CONSUMERS = { payments: "Pagamentos", subscriptions: "Assinaturas", draws: "Sorteios" };
  const SUBSCRIPTION_STATUS = {
    pending_payment: "Aguardando pagamento",
    active: "Ativa",
    past_due: "Pagamento em atraso",
    suspended: "Suspensa",
    cancelled: "Cancelada",
    expired: "Expirada",
  };
  const DRAW_STATUS = {
    scheduled: "Agendado",
    closed: "Inscrições encerradas",
    drawing: "Sorteando agora",
    completed: "Concluído",
    cancelled: "Cancelado",
  };
  const HEALTH = { ok: "OK", attention: "Atenção" };

  const numbers = new Intl.NumberFormat("pt-BR");
  const decimals = new Intl.NumberFormat("pt-BR", { maximumFractionDigits: 1 });
  const dates = new Intl.DateTimeFormat("pt-BR", { dateStyle: "short", timeStyle: "short" });
  const clock = new Intl.DateTimeFormat("pt-BR", { timeStyle: "medium" });

  const $ = (id) => document.getElementById(id);
  let timer = null;
  let lastSuccess = null;
  // Bumped on every login and logout, so that a request started before it cannot render afterwards.
  let generation = 0;

  // ---- formatting ----

  function count(value) {
    return value === null || value === undefined ? "—" : numbers.format(value);
  }

  function milliseconds(value) {
    return value === null || value === undefined ? "—" : `${decimals.format(value)} ms`;
  }

  function age(seconds) {
    if (seconds === null || seconds === undefined) return "—";
    if (seconds < 10) return `${decimals.format(seconds)} s`;
    if (seconds < 60) return `${Math.round(seconds)} s`;
    const minutes = Math.floor(seconds / 60);
    if (minutes < 60) return withRest(`${minutes} min`, Math.floor(seconds % 60), "s");
    const hours = Math.floor(minutes / 60);
    if (hours < 24) return withRest(`${hours} h`, minutes % 60, "min");
    return withRest(`${Math.floor(hours / 24)} d`, hours % 24, "h");
  }

  function withRest(whole, rest, unit) {
    return rest === 0 ? whole : `${whole} ${String(rest).padStart(2, "0")} ${unit}`;
  }

  function when(text) {
    return text ? dates.format(new Date(text)) : "—";
  }

  function label(labels, key) {
    return labels[key] || key;
  }

  // ---- rendering ----

  function setText(id, text) {
    $(id).textContent = text;
  }

  function fillRows(id, rows) {
    const body = $(id);
    body.replaceChildren();
    for (const cells of rows) {
      const row = document.createElement("tr");
      for (const cell of cells) {
        const td = document.createElement("td");
        td.textContent = cell;
        row.appendChild(td);
      }
      body.appendChild(row);
    }
  }

  function fillFacts(id, emptyId, facts) {
    const list = $(id);
    list.replaceChildren();
    $(emptyId).hidden = facts !== null;
    if (facts === null) return;
    for (const [term, value] of facts) {
      const dt = document.createElement("dt");
      dt.textContent = term;
      const dd = document.createElement("dd");
      dd.textContent = value;
      list.append(dt, dd);
    }
  }

  function render(data) {
    renderHealth(data.health);
    renderRules(data.thresholds, data.latency);

    fillRows("webhooks-rows", data.webhooks.map((item) =>
      [label(PARTNERS, item.partner), count(item.last_5_minutes), count(item.last_hour)]));

    setText("outbox-unpublished", count(data.outbox.unpublished));
    setText("outbox-oldest", age(data.outbox.oldest_unpublished_seconds));

    fillRows("deliveries-rows", data.deliveries.map((item) =>
      [label(CONSUMERS, item.consumer), count(item.pending), age(item.oldest_pending_seconds)]));
    fillRows("dead-letters-rows", data.dead_letters.map((item) =>
      [label(CONSUMERS, item.consumer), count(item.open), age(item.oldest_seconds)]));

    setText("latency-p50", milliseconds(data.latency.p50_ms));
    setText("latency-p99", milliseconds(data.latency.p99_ms));
    setText("latency-applied", count(data.latency.applied));
    setText("latency-pending", count(data.latency.not_applied));

    renderSubscriptions(data.subscriptions);

    setText("lucky-issued", count(data.lucky_numbers.issued));
    setText("lucky-waiting", count(data.lucky_numbers.grants_waiting));

    renderDraws(data.next_draw, data.last_draw);
    renderJaeger(data.jaeger_url);
  }

  function renderHealth(health) {
    let attention = 0;
    for (const tile of document.querySelectorAll("[data-tile]")) {
      const status = health[tile.dataset.tile] || "ok";
      if (status === "attention") attention += 1;
      tile.dataset.status = status;
      tile.querySelector(".status").textContent = label(HEALTH, status);
    }

    const summary = $("summary");
    summary.dataset.status = attention ? "attention" : "ok";
    if (attention === 0) summary.textContent = "Tudo OK";
    else if (attention === 1) summary.textContent = "1 item pede atenção";
    else summary.textContent = `${attention} itens pedem atenção`;
  }

  function renderRules(thresholds, latency) {
    setText("rule-outbox", age(thresholds.outbox_oldest_seconds));
    setText("rule-deliveries", age(thresholds.delivery_oldest_seconds));
    setText("rule-p50", milliseconds(thresholds.latency_p50_ms));
    setText("rule-p99", milliseconds(thresholds.latency_p99_ms));
    setText("rule-pushes", age(thresholds.entitlement_push_oldest_seconds));
    setText("rule-draws", age(thresholds.draw_overdue_seconds));
    setText("latency-limit", count(latency.sample_limit));
  }

  function renderSubscriptions(subscriptions) {
    fillRows("subscriptions-rows", subscriptions.by_status.map((item) =>
      [label(SUBSCRIPTION_STATUS, item.status), count(item.count)]));
    setText("subscriptions-total", count(subscriptions.total));
    setText("subscriptions-illegal", count(subscriptions.illegal_transitions_open));
    setText("subscriptions-pushes", count(subscriptions.entitlement_pushes_pending));
    setText("subscriptions-pushes-oldest", age(subscriptions.oldest_entitlement_push_seconds));
  }

  function renderDraws(next, last) {
    fillFacts("next-draw", "next-draw-empty", next && [
      ["Sorteio", next.title],
      ["Situação", label(DRAW_STATUS, next.status)],
      ["Data", when(next.scheduled_at)],
      ["Fim das inscrições", when(next.cutoff_at)],
      ["Números emitidos", count(next.issued_numbers)],
    ]);
    fillFacts("last-draw", "last-draw-empty", last && [
      ["Sorteio", last.title],
      ["Concluído em", when(last.completed_at)],
      ["Duração", age(last.duration_seconds)],
    ]);
  }

  function renderJaeger(url) {
    const link = $("jaeger");
    // The server accepts only http(s) URLs. Checking again keeps any other scheme out of the link.
    const valid = typeof url === "string" && /^https?:\/\//i.test(url);
    link.hidden = !valid;
    if (valid) link.href = url;
  }

  // ---- token and polling ----

  function showLogin(message) {
    generation += 1;
    stopPolling();
    $("panel").hidden = true;
    $("logout").hidden = true;
    $("error").hidden = true;
    $("summary").textContent = "";
    $("updated").textContent = "";
    $("login").hidden = false;
    $("login-error").hidden = !message;
    $("login-error").textContent = message || "";
    $("token").focus();
  }

  function showError(message) {
    const banner = $("error");
    banner.textContent = message;
    banner.hidden = false;
    if (lastSuccess) setText("updated", `Mostrando os dados de ${clock.format(lastSuccess)}, que podem estar desatualizados.`);
  }

  function stopPolling() {
    if (timer !== null) clearTimeout(timer);
    timer = null;
  }

  function schedule() {
    stopPolling();
    timer = setTimeout(refresh, POLL_MS);
  }

  async function problemDetail(response) {
    try {
      const problem = await response.json();
      return typeof problem.detail === "string" ? problem.detail : "";
    } catch (error) {
      return "";
    }
  }

  async function refresh() {
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (!token) return showLogin(null);
    const started = generation;

    let response;
    try {
      response = await fetch(API_PATH, {
        headers: { Authorization: `Bearer ${token}`, Accept: "application/json" },
        cache: "no-store",
        signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
      });
    } catch (error) {
      if (started !== generation) return;
      console.warn("dashboard request failed", error);
      showError(`Não foi possível acessar a API do painel. Nova tentativa em ${POLL_MS / 1000} s.`);
      return schedule();
    }

    if (started !== generation) return;
    if (response.status === 401) {
      sessionStorage.removeItem(TOKEN_KEY);
      return showLogin("Token recusado pelo servidor (401): confira o token de operador e tente de novo.");
    }
    if (!response.ok) {
      const detail = await problemDetail(response);
      const parts = [`A API do painel respondeu com erro ${response.status}.`, detail, `Nova tentativa em ${POLL_MS / 1000} s.`];
      showError(parts.filter(Boolean).join(" "));
      return schedule();
    }

    let data;
    try {
      data = await response.json();
    } catch (error) {
      console.warn("dashboard response is not JSON", error);
      showError(`A API do painel enviou uma resposta inválida. Nova tentativa em ${POLL_MS / 1000} s.`);
      return schedule();
    }

    if (started !== generation) return;
    render(data);
    lastSuccess = new Date();
    $("error").hidden = true;
    $("login").hidden = true;
    $("panel").hidden = false;
    $("logout").hidden = false;
    setText("updated", `Atualizado às ${clock.format(lastSuccess)}; atualiza a cada ${POLL_MS / 1000} s.`);
    schedule();
  }

  $("login-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const token = $("token").value.trim();
    if (!token) return;
    sessionStorage.setItem(TOKEN_KEY, token);
    generation += 1;
    $("token").value = "";
    $("login-error").hidden = true;
    refresh();
  });

  $("logout").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    lastSuccess = null;
    showLogin(null);
  });

  refresh();
})();
