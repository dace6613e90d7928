// Owner dashboard: counters, round charts, worker activity and the report link.
// Refreshes itself while the page is open.
"use strict";

(() => {
  const { ApiError, api, element, setCsrfToken } = labelloop;

  const REFRESH_SECONDS = 5;
  // Statistics shown first, in this order; other numeric keys follow by name.
  const PREFERRED_STATS = [
    "threshold",
    "validation_accuracy",
    "certified_error_bound",
    "human_labeled",
    "machine_labeled",
    "expired_tasks",
  ];
  const COUNTERS = [
    "HumanLabeled",
    "MachineLabeled",
    "TotalLabeled",
    "Unlabeled",
    "FailedNonRetryableError",
    "Expired",
  ];

  const page = {
    jobName: document.getElementById("job-name"),
    jobStatus: document.getElementById("job-status"),
    status: document.getElementById("status"),
    dashboard: document.getElementById("dashboard"),
    counters: document.getElementById("counters"),
    report: document.getElementById("report"),
    qualityChart: document.getElementById("quality-chart"),
    volumeChart: document.getElementById("volume-chart"),
    rounds: document.getElementById("rounds"),
    workers: document.getElementById("workers"),
  };

  function formatNumber(value) {
    if (value === null || value === undefined) {
      return "–";
    }
    return Number.isInteger(value) ? String(value) : value.toFixed(4);
  }

  function percentOrDash(value) {
    if (value === null || value === undefined) {
      return "–";
    }
    return `${(100 * value).toFixed(1)} %`;
  }

  function showError(message) {
    page.status.textContent = message;
    page.status.classList.add("error");
  }

  function renderSummary(summary) {
    page.jobName.textContent = `${summary.job_name} · ${summary.task_type}`;
    page.jobStatus.textContent = summary.job_status;

    const entries = COUNTERS.map((name) => [name, summary.counters[name]]);
    entries.push(
      ["Open tasks", summary.open_tasks],
      ["Tasks in progress", summary.active_assignments],
      ["Answers", summary.answers],
      ["Web workers", summary.web_workers],
      ["Workers per item", summary.workers_per_item],
    );
    page.counters.replaceChildren();
    for (const [name, value] of entries) {
      const group = element("div", "counter");
      group.append(element("dt", null, name), element("dd", null, formatNumber(value)));
      page.counters.append(group);
    }

    page.report.replaceChildren();
    if (summary.report_url) {
      const link = element("a", null, "Open the job report");
      link.href = summary.report_url;
      link.id = "report-link";
      page.report.append(link);
    } else {
      page.report.textContent = "The job report appears here when the job ends.";
    }
  }

  function statKeys(rounds) {
    const keys = new Set();
    rounds.forEach((round) => Object.keys(round.stats).forEach((key) => keys.add(key)));
    const preferred = PREFERRED_STATS.filter((key) => keys.has(key));
    const others = [...keys].filter((key) => !PREFERRED_STATS.includes(key)).sort();
    return preferred.concat(others);
  }

  function series(rounds, key) {
    return {
      name: key.replaceAll("_", " "),
      values: rounds.map((round) => (key in round.stats ? round.stats[key] : null)),
    };
  }

  function renderTable(table, headers, rows) {
    const head = element("thead");
    const headRow = element("tr");
    headers.forEach((name) => headRow.append(element("th", null, name)));
    head.append(headRow);
    const body = element("tbody");
    rows.forEach((cells) => {
      const row = element("tr");
      cells.forEach((cell) => row.append(element("td", null, cell)));
      body.append(row);
    });
    table.replaceChildren(head, body);
  }

  function renderRounds(rounds) {
    const labels = rounds.map((round) => String(round.number));
    charts.line(
      page.qualityChart,
      labels,
      ["threshold", "validation_accuracy", "certified_error_bound"].map(
        (key) => series(rounds, key),
      ),
      "Threshold, validation accuracy and certified error bound per round",
    );
    charts.bars(
      page.volumeChart,
      labels,
      ["human_labeled", "machine_labeled"].map((key) => series(rounds, key)),
      "Human labels per round and machine labels in force after it",
    );

    const keys = statKeys(rounds);
    renderTable(
      page.rounds,
      ["round", "status"].concat(keys.map((key) => key.replaceAll("_", " "))),
      rounds.map((round) => [String(round.number), round.status].concat(
        keys.map((key) => formatNumber(round.stats[key])),
      )),
    );
  }

  function renderWorkers(workers) {
    renderTable(
      page.workers,
      [
        "worker", "kind", "active", "tasks done", "median seconds", "agreement",
        "compared", "estimated accuracy", "gold answers", "gold accuracy", "excluded",
      ],
      workers.map((worker) => [
        worker.worker_id,
        worker.kind,
        worker.active ? "yes" : "no",
        String(worker.tasks_done),
        worker.median_seconds === null ? "–" : worker.median_seconds.toFixed(1),
        percentOrDash(worker.agreement),
        String(worker.compared),
        percentOrDash(worker.estimated_accuracy),
        String(worker.gold_answers),
        percentOrDash(worker.gold_accuracy),
        worker.excluded ? "yes" : "no",
      ]),
    );
  }

  async function refresh() {
    try {
      const [summary, rounds, workers] = await Promise.all([
        api("GET", "/api/admin/summary"),
        api("GET", "/api/admin/rounds"),
        api("GET", "/api/admin/workers"),
      ]);
      renderSummary(summary);
      renderRounds(rounds);
      renderWorkers(workers);
      page.dashboard.hidden = false;
      page.status.classList.remove("error");
      page.status.textContent = `Updated ${new Date().toLocaleTimeString()}.`;
    } catch (error) {
      if (error instanceof ApiError && error.status === 401) {
        showError("Not logged in. Run 'labelloop admin-token job.yaml' and open the link it prints.");
        return;
      }
      if (error instanceof ApiError && error.status === 403) {
        showError("This browser is logged in as a worker. Open the admin link to see the dashboard.");
        return;
      }
      showError(error.message || String(error));
    }
    setTimeout(refresh, REFRESH_SECONDS * 1000);
  }

  async function start() {
    try {
      const me = await api("GET", "/api/me");
      setCsrfToken(me.csrf_token);
    } catch (error) {
      // refresh() reports the login problem.
    }
    await refresh();
  }

  start();
})();
