// The interactive API docs: Swagger UI over /openapi.json, which needs a read token like the API itself.
// The description is fetched with the session's token (asked for once, as on the dashboard's pages), and every
// "Try it out" request carries the same token.
"use strict";

(async function () {
  const status = document.getElementById("docs-status");
  const response = await MF.fetch("/openapi.json");
  if (!response.ok) {
    let detail = response.statusText;
    try { detail = MF.words((await response.json()).detail) || detail; } catch (_) { /* not JSON */ }
    status.textContent = `The API description could not be read: ${detail}`;
    return;
  }
  const spec = await response.json();
  if (typeof SwaggerUIBundle === "undefined") {
    status.textContent = "Swagger UI could not be loaded (it comes from cdn.jsdelivr.net); " +
      "the description itself is at /openapi.json (send your token).";
    return;
  }
  status.textContent = "";
  SwaggerUIBundle({
    spec,
    dom_id: "#swagger-ui",
    requestInterceptor: (request) => {
      const token = sessionStorage.getItem(MF.TOKEN_KEY);
      if (token) request.headers.Authorization = `Bearer ${token}`;
      return request;
    },
  });
})();
