// Worker page: shows one task at a time, takes a category by mouse or keyboard,
// submits or skips it and fetches the next one.
"use strict";

(() => {
  const { ApiError, api, element, setCsrfToken } = labelloop;

  // Seconds between checks for a new task while none is open.
  const POLL_SECONDS = 3;
  const LETTERS = "abcdefghijklmnopqrstuvwxyz";

  const page = {
    jobName: document.getElementById("job-name"),
    finished: document.getElementById("finished-count"),
    status: document.getElementById("status"),
    task: document.getElementById("task"),
    image: document.getElementById("item-image"),
    text: document.getElementById("item-text"),
    timeLeft: document.getElementById("time-left"),
    categories: document.getElementById("categories"),
    skip: document.getElementById("skip"),
    submit: document.getElementById("submit"),
    logout: document.getElementById("logout"),
  };

  const state = {
    categories: [],
    buttons: [],
    shortcuts: new Map(),
    task: null,
    selected: null,
    deadline: 0,
    busy: false,
    pollTimer: null,
    stopped: false,
  };

  // 1-9 for the first nine categories, then a-z.
  function shortcutFor(index) {
    if (index < 9) {
      return String(index + 1);
    }
    return index - 9 < LETTERS.length ? LETTERS[index - 9] : null;
  }

  function showStatus(message, isError) {
    page.status.textContent = message;
    page.status.classList.toggle("error", Boolean(isError));
  }

  function stop(message) {
    state.stopped = true;
    state.task = null;
    clearTimeout(state.pollTimer);
    page.task.hidden = true;
    showStatus(message, true);
  }

  function buildCategoryButtons() {
    page.categories.replaceChildren();
    state.buttons = [];
    state.shortcuts.clear();
    state.categories.forEach((name, index) => {
      const button = element("button", "category");
      button.type = "button";
      button.setAttribute("aria-pressed", "false");
      // The accessible name is the category alone; the shortcut is announced
      // through aria-keyshortcuts.
      button.setAttribute("aria-label", name);
      const key = shortcutFor(index);
      if (key !== null) {
        button.append(element("kbd", null, key), " ");
        state.shortcuts.set(key, index);
        button.setAttribute("aria-keyshortcuts", key);
      }
      button.append(element("span", "category-name", name));
      button.addEventListener("click", () => select(index));
      page.categories.append(button);
      state.buttons.push(button);
    });
  }

  function select(index) {
    if (!state.task) {
      return;
    }
    state.selected = index;
    state.buttons.forEach((button, position) => {
      button.setAttribute("aria-pressed", position === index ? "true" : "false");
    });
    page.submit.disabled = false;
  }

  // A shortcut key also moves the focus to its category, so Enter submits the
  // category that has the focus ring.
  function selectAndFocus(index) {
    select(index);
    if (state.task) {
      state.buttons[index].focus();
    }
  }

  function render(task) {
    state.task = task;
    state.selected = null;
    state.deadline = Date.now() + task.seconds_left * 1000;
    state.buttons.forEach((button) => button.setAttribute("aria-pressed", "false"));
    page.submit.disabled = true;

    if (task.media === "text") {
      page.image.hidden = true;
      page.image.removeAttribute("src");
      // textContent, never innerHTML: item text is data, not markup.
      page.text.textContent = task.text;
      page.text.hidden = false;
    } else {
      page.text.hidden = true;
      page.text.textContent = "";
      page.image.src = task.image_url;
      page.image.alt = `Item ${task.item_id} to label`;
      page.image.hidden = false;
    }
    page.task.hidden = false;
    page.task.dataset.itemId = String(task.item_id);
    page.task.dataset.assignmentId = String(task.assignment_id);
    // Focus left on a category of the previous task would let a second Enter
    // answer this task unseen. The task itself takes the focus, and the next
    // Tab reaches the first category.
    if (page.task.contains(document.activeElement)) {
      page.task.focus();
    }
    showStatus(`Task for item ${task.item_id}: choose a category.`);
    updateTimer();
  }

  function updateTimer() {
    if (!state.task) {
      page.timeLeft.textContent = "–";
      return;
    }
    const seconds = Math.max(0, Math.round((state.deadline - Date.now()) / 1000));
    const minutes = Math.floor(seconds / 60);
    page.timeLeft.textContent = `${minutes}:${String(seconds % 60).padStart(2, "0")}`;
    if (seconds === 0 && !state.busy) {
      showStatus("Time is up for this task; fetching the next one.", true);
      state.task = null;
      loadNext();
    }
  }

  function handleError(error) {
    if (error instanceof ApiError && error.status === 401) {
      stop("You are not logged in. Open the login link that the job owner gave you.");
      return true;
    }
    if (error instanceof ApiError && error.status === 403 && !state.task) {
      stop(error.message);
      return true;
    }
    showStatus(error.message || String(error), true);
    return false;
  }

  async function loadNext() {
    if (state.stopped) {
      return;
    }
    clearTimeout(state.pollTimer);
    state.busy = true;
    try {
      const result = await api("GET", "/api/tasks/next");
      page.finished.textContent = String(result.finished_count);
      if (result.task) {
        render(result.task);
      } else {
        state.task = null;
        page.task.hidden = true;
        showStatus(result.message);
        if (result.job_status !== "completed") {
          state.pollTimer = setTimeout(loadNext, POLL_SECONDS * 1000);
        }
      }
    } catch (error) {
      if (!handleError(error)) {
        state.pollTimer = setTimeout(loadNext, POLL_SECONDS * 1000);
      }
    } finally {
      state.busy = false;
    }
  }

  async function submitAnswer() {
    if (!state.task || state.selected === null || state.busy) {
      return;
    }
    const task = state.task;
    const label = state.categories[state.selected];
    state.busy = true;
    page.submit.disabled = true;
    try {
      const result = await api("POST", `/api/tasks/${task.assignment_id}/answer`, {
        label,
      });
      page.finished.textContent = String(result.finished_count);
      showStatus(`Saved "${label}" for item ${task.item_id}.`);
    } catch (error) {
      if (handleError(error)) {
        state.busy = false;
        return;
      }
    }
    state.busy = false;
    await loadNext();
  }

  async function skipTask() {
    if (!state.task || state.busy) {
      return;
    }
    const task = state.task;
    state.busy = true;
    try {
      await api("POST", `/api/tasks/${task.assignment_id}/skip`);
      showStatus(`Skipped item ${task.item_id}.`);
    } catch (error) {
      if (handleError(error)) {
        state.busy = false;
        return;
      }
    }
    state.busy = false;
    await loadNext();
  }

  function onKeyDown(event) {
    if (event.ctrlKey || event.metaKey || event.altKey || state.stopped) {
      return;
    }
    const focused = document.activeElement;
    const focusedCategory = state.buttons.indexOf(focused);
    const onOtherButton = focused && focused.tagName === "BUTTON"
      && focusedCategory === -1;
    if (event.key === "Enter") {
      // On a category button Enter chooses that category and submits; with no
      // button focused it submits the chosen category. On Skip, Submit or Log
      // out it keeps its usual meaning. A held-down Enter submits once.
      if (onOtherButton) {
        return;
      }
      event.preventDefault();
      if (event.repeat) {
        return;
      }
      if (focusedCategory !== -1) {
        select(focusedCategory);
      }
      submitAnswer();
      return;
    }
    if (event.key === "Escape") {
      event.preventDefault();
      skipTask();
      return;
    }
    const index = state.shortcuts.get(event.key.toLowerCase());
    if (index !== undefined) {
      event.preventDefault();
      selectAndFocus(index);
    }
  }

  async function logout() {
    try {
      await api("POST", "/api/logout");
    } catch (error) {
      handleError(error);
    }
    stop("You are logged out. Open a new login link to work again.");
    page.logout.hidden = true;
  }

  async function start() {
    let me;
    try {
      me = await api("GET", "/api/me");
    } catch (error) {
      handleError(error);
      return;
    }
    if (me.role !== "worker") {
      stop("This browser is logged in to the owner dashboard. Open /admin, or log in with a worker link.");
      return;
    }
    setCsrfToken(me.csrf_token);
    state.categories = me.categories;
    page.jobName.textContent = `${me.job_name} · ${me.worker_id}`;
    page.finished.textContent = String(me.finished_count);
    page.logout.hidden = false;
    buildCategoryButtons();

    page.submit.addEventListener("click", submitAnswer);
    page.skip.addEventListener("click", skipTask);
    page.logout.addEventListener("click", logout);
    document.addEventListener("keydown", onKeyDown);
    setInterval(updateTimer, 1000);
    await loadNext();
  }

  start();
})();
