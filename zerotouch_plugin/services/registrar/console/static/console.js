// The registrar console's behaviour: sign-in from the link's fragment, the live device list
// (server-sent events), filtering, and the day-0 check. Text from the registrar is only ever
// put into the page as text (textContent), never as HTML.
"use strict";

(function () {
  const page = document.body.dataset.page;
  const meta = document.querySelector('meta[name="csrf-token"]');
  const csrf = meta ? meta.content : "";

  function signIn() {
    const match = /(?:^#|&)token=([^&]+)/.exec(window.location.hash);
    if (!match) {
      return;
    }
    document.getElementById("token").value = decodeURIComponent(match[1]);
    // the token leaves the address bar and the history before anything else happens
    window.history.replaceState(null, "", window.location.pathname);
    document.getElementById("login").requestSubmit();
  }

  function cell(label, text, className) {
    const td = document.createElement("td");
    td.dataset.label = label;
    td.textContent = text;
    if (className) {
      td.className = className;
    }
    return td;
  }

  function timeCell(label, iso) {
    const td = document.createElement("td");
    td.dataset.label = label;
    if (!iso) {
      td.textContent = "—";
      return td;
    }
    const time = document.createElement("time");
    time.dateTime = iso;
    time.textContent = iso.replace("T", " ").replace(/\.\d+/, "").replace("Z", "");
    td.appendChild(time);
    return td;
  }

  function deviceRow(d) {
    const tr = document.createElement("tr");
    tr.dataset.serial = d.serial;
    tr.dataset.phase = d.phase;
    const first = document.createElement("td");
    first.dataset.label = "Serial";
    const link = document.createElement("a");
    link.href = "/console/devices/" + encodeURIComponent(d.serial);
    link.textContent = d.serial;
    first.appendChild(link);
    tr.appendChild(first);
    const phase = document.createElement("td");
    phase.dataset.label = "Phase";
    const badge = document.createElement("span");
    badge.className = "phase phase-" + d.phase;
    badge.textContent = d.phase;
    phase.appendChild(badge);
    tr.appendChild(phase);
    tr.appendChild(cell("Manufacturer", d.manufacturer || "—"));
    tr.appendChild(timeCell("Last contact", d.last_contact));
    tr.appendChild(cell("Hand-off", d.handoff));
    tr.appendChild(cell("Audit", d.audit || "—", "audit-" + (d.audit || "—")));
    tr.appendChild(cell("Last error", d.error || "", "error"));
    return tr;
  }

  function applyFilter() {
    const query = document.getElementById("q").value.trim().toLowerCase();
    const phase = document.getElementById("phase").value;
    let shown = 0;
    for (const tr of document.querySelectorAll("#devices tbody tr")) {
      const text = tr.textContent.toLowerCase();
      const visible = (!phase || tr.dataset.phase === phase) && (!query || text.includes(query));
      tr.hidden = !visible;
      shown += visible ? 1 : 0;
    }
    document.getElementById("empty").hidden = shown > 0;
  }

  async function refresh(status, why) {
    const response = await fetch("/console/api/devices", { credentials: "same-origin" });
    if (!response.ok) {
      status.textContent = "Could not update the list (" + response.status + ").";
      return;
    }
    const data = await response.json();
    const body = document.querySelector("#devices tbody");
    body.replaceChildren(...data.devices.map(deviceRow));
    applyFilter();
    status.textContent = "Live. Updated " + new Date().toLocaleTimeString() + (why ? ": " + why : ".");
  }

  function devices() {
    const status = document.getElementById("live");
    const table = document.getElementById("devices");
    for (const id of ["q", "phase"]) {
      document.getElementById(id).addEventListener("input", applyFilter);
    }
    applyFilter();
    const stream = new EventSource("/console/events");
    let pending = null;
    const onEvent = function (message) {
      let why = message.type;
      try {
        const event = JSON.parse(message.data);
        why = event.type + " " + (event.serial || "");
      } catch (e) {
        // an event without JSON data still means: look again
      }
      window.clearTimeout(pending);
      pending = window.setTimeout(function () { refresh(status, why); }, 150);
    };
    for (const type of (table.dataset.eventTypes || "").split(",")) {
      if (type) {
        stream.addEventListener(type, onEvent);
      }
    }
    stream.onopen = function () { refresh(status, ""); };
    stream.onerror = function () { status.textContent = "Connection lost; reconnecting…"; };
  }

  function day0() {
    const form = document.getElementById("day0-form");
    const problem = document.getElementById("day0-error");
    const text = document.getElementById("config");
    document.getElementById("check").addEventListener("click", async function () {
      const response = await fetch(form.dataset.check, {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
        body: JSON.stringify({ config: text.value, format: document.getElementById("format").value }),
      });
      problem.replaceChildren();
      problem.hidden = false;
      const line = document.createElement("p");
      if (!response.ok) {
        line.textContent = "The check failed (" + response.status + ").";
      } else {
        const result = await response.json();
        if (result.ok) {
          problem.className = "ok";
          text.removeAttribute("aria-invalid");
          line.textContent = "Valid: the device schema accepts it.";
        } else {
          problem.className = "error";
          text.setAttribute("aria-invalid", "true");
          line.textContent = result.error;
          if (result.path) {
            line.append(" at ");
            const code = document.createElement("code");
            code.id = "error-path";
            code.textContent = result.path;
            line.appendChild(code);
          }
        }
      }
      problem.appendChild(line);
    });
  }

  if (page === "login") {
    signIn();
  } else if (page === "devices") {
    devices();
  } else if (page === "day0") {
    day0();
  }
})();
