// Managing one job from its page: rename, notes, cancel and delete (PATCH, POST .../cancel, DELETE /v1/jobs/{id}).
// The bar lives outside the summary, so the summary's refresh while a job runs never closes a form being edited;
// each control's error shows next to it, in words.
"use strict";

MF.manage = (function () {
  let jobId = null;
  let job = null;
  let onChange = async () => {};
  let onDeleted = () => {};

  const $ = (id) => document.getElementById(id);

  function showError(text) {
    $("manage-error").textContent = text || "";
    $("manage-error").hidden = !text;
  }

  // A refused request in words; a read-only token is told what it lacks.
  function refused(what, err) {
    if (err.status === 403) return `${what} needs a token with write scope: ${err.message}`;
    if (err.status === 404) return `${what} failed: job #${jobId} no longer exists (deleted elsewhere?).`;
    if (err.status === 409 && what === "Deleting" && job && !MF.isDone(job)) {
      return `Deleting failed: job #${jobId} is ${job.state}; cancel it first ("cancel job"), then delete it.`;
    }
    return `${what} failed: ${err.message}`;
  }

  async function send(what, url, options) {
    try {
      const out = await MF.request(url, options);
      showError("");
      return { ok: true, out };
    } catch (err) {
      if (!(err instanceof MF.ApiError)) throw err;
      showError(refused(what, err));
      return { ok: false };
    }
  }

  function toggle(formId, open) {
    for (const id of ["rename-form", "notes-form"]) $(id).hidden = id !== formId || !open;
    showError("");
    if (!open) return;
    if (formId === "rename-form") {
      $("rename-input").value = job ? job.name : "";
      $("rename-input").focus();
    } else {
      $("notes-input").value = job && job.notes ? job.notes : "";
      $("notes-input").focus();
    }
  }

  const patch = (body) => ({ method: "PATCH", headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body) });

  async function rename(event) {
    event.preventDefault();
    const { ok } = await send("Renaming", `/v1/jobs/${jobId}`, patch({ name: $("rename-input").value.trim() }));
    if (!ok) return;
    toggle("rename-form", false);
    await onChange();
  }

  async function saveNotes(event) {
    event.preventDefault();
    const text = $("notes-input").value.trim();
    const { ok } = await send("Saving the notes", `/v1/jobs/${jobId}`, patch({ notes: text || null }));
    if (!ok) return;
    toggle("notes-form", false);
    await onChange();
  }

  async function cancel() {
    if (!window.confirm(`Cancel job #${jobId}? Finished evaluations are kept; running ones are abandoned.`)) return;
    const { ok } = await send("Cancelling", `/v1/jobs/${jobId}/cancel`, { method: "POST" });
    if (ok) await onChange();
  }

  async function remove() {
    const name = job ? ` "${job.name}"` : "";
    if (!window.confirm(`Delete job #${jobId}${name} with all its evaluations? This cannot be undone.`)) return;
    const { ok } = await send("Deleting", `/v1/jobs/${jobId}`, { method: "DELETE" });
    if (ok) onDeleted(job);
  }

  // The job as last read: the bar offers cancel while it runs, delete once it is done (the server says why not
  // before: a live job is cancelled first).
  function update(latest) {
    job = latest;
    $("manage").hidden = false;
    $("cancel-job-slot").replaceChildren(...(MF.isDone(job) ? [] :
      [MF.el("button", { type: "button", id: "cancel-job", onclick: MF.guard(cancel) }, "cancel job")]));
    $("delete-job").title = MF.isDone(job) ? "delete this job and its evaluations" :
      "a pending or running job is cancelled first";
  }

  function hide() {
    $("manage").hidden = true;
  }

  function init(id, handlers) {
    jobId = id;
    onChange = handlers.changed;
    onDeleted = handlers.deleted;
    $("rename-open").addEventListener("click", () => toggle("rename-form", $("rename-form").hidden));
    $("notes-open").addEventListener("click", () => toggle("notes-form", $("notes-form").hidden));
    document.querySelectorAll("#manage .dismiss").forEach((b) => b.addEventListener("click", () => toggle(null, false)));
    $("rename-form").addEventListener("submit", MF.guard(rename));
    $("notes-form").addEventListener("submit", MF.guard(saveNotes));
    $("delete-job").addEventListener("click", MF.guard(remove));
  }

  return { init, update, hide };
})();
