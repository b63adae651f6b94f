/* wch admin panel: the dashboard's 30-second refresh and chart, and "select all" on lists. */
(function () {
  "use strict";

  var chart = null;

  function drawChart() {
    var canvas = document.getElementById("hourly-chart");
    var data = document.getElementById("hourly-data");
    if (!canvas || !data || typeof Chart === "undefined") { return; }
    var hourly = JSON.parse(data.textContent);
    if (chart) { chart.destroy(); }
    chart = new Chart(canvas, {
      type: "bar",
      data: {
        labels: hourly.labels,
        datasets: [
          { label: "succeeded", data: hourly.succeeded, backgroundColor: "#28a745" },
          { label: "failed", data: hourly.failed, backgroundColor: "#dc3545" }
        ]
      },
      options: {
        animation: false,
        maintainAspectRatio: false,
        scales: { x: { stacked: true, ticks: { maxRotation: 0, autoSkip: true } }, y: { stacked: true, beginAtZero: true, ticks: { precision: 0 } } },
        plugins: { legend: { position: "bottom" } }
      }
    });
  }

  function startRefresh(box) {
    var url = box.getAttribute("data-refresh-url");
    var every = parseInt(box.getAttribute("data-refresh-seconds"), 10) * 1000;
    var last = Date.now();
    var busy = false;

    function refresh() {
      if (busy || document.hidden) { return; }
      busy = true;
      box.classList.add("wch-refreshing");
      fetch(url, { credentials: "same-origin", headers: { "X-Requested-With": "fetch" } })
        .then(function (response) {
          // Logged out meanwhile: the fragment redirects to the log-in page; show it whole.
          if (response.redirected || response.status === 401 || response.status === 403) {
            window.location.reload();
            return null;
          }
          return response.ok ? response.text() : null;
        })
        .then(function (html) {
          if (html !== null && html !== undefined) {
            box.innerHTML = html;
            drawChart();
          }
          last = Date.now();
        })
        .catch(function () { /* network hiccup: keep the old numbers, try again next time */ })
        .then(function () { busy = false; box.classList.remove("wch-refreshing"); });
    }

    setInterval(refresh, every);
    document.addEventListener("visibilitychange", function () {
      if (!document.hidden && Date.now() - last >= every) { refresh(); }
    });
  }

  function selectAll() {
    document.querySelectorAll(".wch-select-all").forEach(function (toggle) {
      toggle.addEventListener("change", function () {
        var table = toggle.closest("table");
        table.querySelectorAll("input[name=ids]").forEach(function (box) { box.checked = toggle.checked; });
      });
    });
  }

  // The reminder message with sample values, as the customer would read it; the
  // server refuses unknown placeholders on save, this only shows them early.
  function livePreview() {
    var message = document.getElementById("message");
    var preview = document.getElementById("message-preview");
    var values = document.getElementById("preview-values");
    if (!message || !preview || !values) { return; }
    var samples = JSON.parse(values.textContent);
    var problem = document.getElementById("preview-problem");

    function render() {
      var unknown = [];
      var text = message.value.replace(/\{\{/g, "\u0000").replace(/\}\}/g, "\u0001")
        .replace(/\{([^{}]*)\}/g, function (whole, name) {
          if (Object.prototype.hasOwnProperty.call(samples, name)) { return samples[name]; }
          unknown.push(whole);
          return whole;
        })
        .replace(/\u0000/g, "{").replace(/\u0001/g, "}");
      preview.textContent = text;
      problem.textContent = unknown.length ? "Unknown placeholder(s): " + unknown.join(" ") + " (saving will be refused)" : "";
    }
    message.addEventListener("input", render);
    render();
  }

  // Forms that ask before they submit (data-confirm="question"): no inline handlers, so the CSP can forbid them.
  function confirmations() {
    document.querySelectorAll("form[data-confirm]").forEach(function (form) {
      form.addEventListener("submit", function (event) {
        if (!window.confirm(form.getAttribute("data-confirm"))) { event.preventDefault(); }
      });
    });
  }

  // A campaign's CSV goes up with a progress bar, then the server imports it (a chunk at a time);
  // the answer replaces the page, as a plain form post would.
  function uploadProgress() {
    var form = document.getElementById("campaign-form");
    var box = document.getElementById("upload-progress");
    if (!form || !box || !window.XMLHttpRequest) { return; }
    form.addEventListener("submit", function (event) {
      var file = form.querySelector("input[type=file]");
      var csv = form.querySelector("input[name=audience]:checked");
      if (!file || !file.files.length || !csv || csv.value !== "csv") { return; }
      event.preventDefault();
      var bar = box.querySelector("progress");
      var text = document.getElementById("upload-progress-text");
      var request = new XMLHttpRequest();
      box.classList.remove("d-none");
      form.querySelector("button[type=submit]").disabled = true;
      request.upload.addEventListener("progress", function (e) {
        if (!e.lengthComputable) { return; }
        bar.value = Math.round(100 * e.loaded / e.total);
        text.textContent = e.loaded < e.total ? "Uploading… " + bar.value + " %" : "Importing the recipients…";
      });
      request.addEventListener("load", function () {
        document.open();
        document.write(request.responseText);
        document.close();
      });
      request.addEventListener("error", function () {
        text.textContent = "The upload failed; try again.";
        form.querySelector("button[type=submit]").disabled = false;
      });
      request.open("POST", form.action);
      request.send(new FormData(form));
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    confirmations();
    uploadProgress();
    drawChart();
    livePreview();
    var box = document.getElementById("wch-dashboard");
    if (box) { startRefresh(box); }
    selectAll();
  });
})();
