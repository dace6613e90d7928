// Shared helpers of the worker page and the owner dashboard.
"use strict";

const labelloop = (() => {
  let csrfToken = "";

  class ApiError extends Error {
    constructor(status, detail) {
      super(detail);
      this.status = status;
    }
  }

  // Sends a request to the app's JSON API. POST requests carry the session's
  // CSRF token, which the server checks.
  async function api(method, path, body) {
    const headers = { Accept: "application/json" };
    const options = { method, headers, credentials: "same-origin" };
    if (method !== "GET") {
      headers["X-CSRF-Token"] = csrfToken;
      if (body !== undefined) {
        headers["Content-Type"] = "application/json";
        options.body = JSON.stringify(body);
      }
    }
    const response = await fetch(path, options);
    let data = null;
    try {
      data = await response.json();
    } catch (error) {
      data = null;
    }
    if (!response.ok) {
      const detail = data && typeof data.detail === "string"
        ? data.detail
        : `request failed with status ${response.status}`;
      throw new ApiError(response.status, detail);
    }
    return data;
  }

  function setCsrfToken(token) {
    csrfToken = token;
  }

  // Creates an element with optional class and text. Text is always set through
  // textContent, so item text or names from the server are never parsed as HTML.
  function element(tag, className, text) {
    const node = document.createElement(tag);
    if (className) {
      node.className = className;
    }
    if (text !== undefined && text !== null) {
      node.textContent = String(text);
    }
    return node;
  }

  return { ApiError, api, element, setCsrfToken };
})();
