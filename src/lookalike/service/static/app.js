// lookalike web page: pick / drop / paste / photograph an image, see its lookalikes and the verdict.
// Plain JS, no build step. Every server-provided string goes into textContent, never innerHTML.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const els = {
    info: $("gallery-info"), model: $("model-info"), drop: $("dropzone"), preview: $("query-preview"),
    empty: $("drop-empty"), name: $("query-name"), file: $("file-input"), camera: $("camera-input"),
    verdict: $("verdict"), detail: $("verdict-detail"), results: $("results"), spinner: $("spinner"),
    toast: $("toast"), manage: $("manage"), manageForm: $("manage-form"), manageOff: $("manage-disabled"),
    key: $("api-key"), label: $("add-label"), add: $("add-button"),
  };
  const K = 10;
  let health = null;
  let current = null; // {blob, name}
  let lastResult = null;
  let previewUrl = null;
  let toastTimer = null;

  const fmt = (x) => (x === null || x === undefined ? "–" : Number(x).toFixed(3));
  const apiKey = () => els.key.value.trim();

  async function errorText(response) {
    try {
      const body = await response.json();
      if (typeof body.detail === "string") return body.detail;
      if (Array.isArray(body.detail)) return body.detail.map((d) => d.msg).join("; ");
    } catch (_) { /* not JSON */ }
    return `${response.status} ${response.statusText}`;
  }

  function toast(message, kind) {
    els.toast.textContent = message;
    els.toast.className = `toast ${kind || ""}`;
    els.toast.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { els.toast.hidden = true; }, kind === "error" ? 7000 : 3500);
  }

  async function loadHealth() {
    try {
      const response = await fetch("/health");
      if (!response.ok) throw new Error(await errorText(response));
      health = await response.json();
      const t = health.threshold === null ? "no threshold" : `threshold ${fmt(health.threshold)}`;
      els.info.textContent = `${health.gallery_size} items · ${t}`;
      els.info.classList.remove("down");
      els.model.textContent = `model ${health.model_fingerprint.slice(0, 12)} · ${health.distance} distance`;
      els.manageOff.hidden = health.writes_enabled;
      els.manageForm.hidden = !health.writes_enabled;
    } catch (err) {
      els.info.textContent = "server not reachable";
      els.info.classList.add("down");
    }
  }

  function setVerdict(kind, text, detail) {
    els.verdict.className = `verdict ${kind}`;
    els.verdict.querySelector(".verdict-text").textContent = text;
    els.detail.textContent = detail || "";
  }

  function showQuery(blob, name) {
    current = { blob, name };
    if (previewUrl) URL.revokeObjectURL(previewUrl);
    previewUrl = URL.createObjectURL(blob);
    els.preview.src = previewUrl;
    els.preview.hidden = false;
    els.empty.hidden = true;
    els.drop.classList.add("has-image");
    els.name.textContent = name;
    els.name.hidden = false;
    updateAddButton();
  }

  async function handleFile(file) {
    if (!file) return;
    if (file.type && !file.type.startsWith("image/")) {
      toast(`${file.name || "that file"} is not an image: pick a photo (JPEG, PNG, WebP…)`, "error");
      return;
    }
    showQuery(file, file.name || "pasted image");
    await search();
  }

  async function search() {
    if (!current) return;
    const form = new FormData();
    form.append("image", current.blob, current.name);
    const k = health ? Math.min(K, health.max_k) : K;
    form.append("k", String(k));
    els.results.replaceChildren();
    els.spinner.hidden = false;
    setVerdict("idle", "Looking for lookalikes…");
    try {
      const response = await fetch("/search", { method: "POST", body: form });
      if (!response.ok) throw new Error(await errorText(response));
      lastResult = await response.json();
      render(lastResult);
    } catch (err) {
      lastResult = null;
      setVerdict("no-match", "Could not search this image", err.message);
    } finally {
      els.spinner.hidden = true;
    }
  }

  function render(result) {
    const { decision, label, distance, threshold, margin, neighbours } = result;
    const name = result.score_name || "nearest";
    const what = name === "nearest" ? `nearest distance ${fmt(distance)}`
      : `${name} score ${fmt(result.score)} (nearest distance ${fmt(distance)})`;
    if (decision === "match") {
      setVerdict("match", `match: ${label}`,
        `${what} is within the threshold ${fmt(threshold)} (margin ${fmt(margin)})`);
    } else if (decision === "no match") {
      setVerdict("no-match", "no match",
        neighbours.length
          ? `${what} is beyond the threshold ${fmt(threshold)}: none of these is it`
          : "the gallery is empty");
    } else if (decision === "no threshold") {
      setVerdict("unsure", label ? `nearest: ${label}` : "no match",
        "this gallery has no calibrated threshold, so the nearest item is shown without a verdict");
    } else {
      setVerdict("no-match", "Could not search this image", result.error || "");
    }
    const cards = neighbours.map((n) => card(n, decision === "match" && n.rank === 1, threshold));
    if (!cards.length) {
      const empty = document.createElement("p");
      empty.className = "empty-results";
      empty.textContent = "The gallery has no items yet.";
      cards.push(empty);
    }
    els.results.replaceChildren(...cards);
    // on a phone the verdict sits below the photo: bring it into view
    const top = els.verdict.getBoundingClientRect().top;
    if (top > window.innerHeight * 0.6 || top < 0) els.verdict.scrollIntoView({ behavior: "smooth", block: "start" });
  }

  function card(n, best, threshold) {
    const el = document.createElement("figure");
    el.className = `card${best ? " best" : ""}`;
    el.dataset.id = n.id;
    el.style.margin = "0";
    const img = document.createElement("img");
    img.src = n.thumbnail;
    img.alt = n.label;
    img.loading = "lazy";
    const rank = document.createElement("span");
    rank.className = "rank";
    rank.textContent = `#${n.rank}`;
    const meta = document.createElement("figcaption");
    meta.className = "meta";
    const label = document.createElement("span");
    label.className = "label";
    appendBreakable(label, n.label);
    const distance = document.createElement("span");
    const inside = threshold !== null && n.distance !== null && n.distance <= threshold;
    distance.className = `distance${inside ? " inside" : ""}`;
    distance.textContent = `distance ${fmt(n.distance)}`;
    meta.append(label, distance);
    el.append(img, rank, meta);
    if (health && health.writes_enabled && apiKey()) el.append(removeButton(n));
    return el;
  }

  // long labels such as "Alphabet/character03" may wrap after each "/" instead of mid-word
  function appendBreakable(el, text) {
    text.split("/").forEach((part, i, parts) => {
      el.append(part + (i < parts.length - 1 ? "/" : ""));
      if (i < parts.length - 1) el.append(document.createElement("wbr"));
    });
  }

  function removeButton(n) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "remove";
    button.textContent = "remove";
    button.title = `Remove ${n.label} (${n.id}) from the gallery`;
    button.addEventListener("click", async (event) => {
      event.stopPropagation();
      if (!button.classList.contains("confirm")) {
        button.classList.add("confirm");
        button.textContent = "sure?";
        setTimeout(() => { button.classList.remove("confirm"); button.textContent = "remove"; }, 4000);
        return;
      }
      button.disabled = true;
      try {
        const response = await fetch(`/items/${encodeURIComponent(n.id)}`, {
          method: "DELETE", headers: { "X-API-Key": apiKey() },
        });
        if (!response.ok) throw new Error(await errorText(response));
        toast(`Removed ${n.label} from the gallery`, "ok");
        await loadHealth();
        await search();
      } catch (err) {
        button.disabled = false;
        toast(err.message, "error");
      }
    });
    return button;
  }

  function updateAddButton() {
    els.add.disabled = !(current && apiKey() && els.label.value.trim());
  }

  async function addCurrent() {
    if (!current) return;
    const form = new FormData();
    form.append("image", current.blob, current.name);
    form.append("label", els.label.value.trim());
    els.add.disabled = true;
    try {
      const response = await fetch("/items", {
        method: "POST", body: form, headers: { "X-API-Key": apiKey() },
      });
      if (!response.ok) throw new Error(await errorText(response));
      const item = await response.json();
      toast(`Added to the gallery as “${item.label}” (${item.gallery_size} items now)`, "ok");
      await loadHealth();
      await search();
    } catch (err) {
      toast(`Not added: ${err.message}`, "error");
    } finally {
      updateAddButton();
    }
  }

  // a file the browser cannot show (e.g. not an image): no broken-image icon
  els.preview.addEventListener("error", () => {
    els.preview.hidden = true;
    els.empty.hidden = false;
    els.drop.classList.remove("has-image");
    els.empty.querySelector(".drop-title").textContent = "Cannot show this file";
  });
  els.preview.addEventListener("load", () => {
    els.empty.querySelector(".drop-title").textContent = "Drop a photo here";
  });

  // picking, camera, drag and drop, paste
  els.file.addEventListener("change", () => { handleFile(els.file.files[0]); els.file.value = ""; });
  els.camera.addEventListener("change", () => { handleFile(els.camera.files[0]); els.camera.value = ""; });
  els.drop.addEventListener("click", () => els.file.click());
  els.drop.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") els.file.click(); });
  ["dragenter", "dragover"].forEach((type) => document.addEventListener(type, (e) => {
    e.preventDefault();
    els.drop.classList.add("dragover");
  }));
  ["dragleave", "drop"].forEach((type) => document.addEventListener(type, (e) => {
    e.preventDefault();
    if (type === "drop" || e.target === document.documentElement) els.drop.classList.remove("dragover");
  }));
  document.addEventListener("drop", (e) => {
    const file = [...(e.dataTransfer?.files || [])].find((f) => f.type.startsWith("image/"));
    if (file) handleFile(file);
    else toast("Drop an image file (JPEG, PNG, WebP…)", "error");
  });
  document.addEventListener("paste", (e) => {
    const item = [...(e.clipboardData?.items || [])].find((i) => i.type.startsWith("image/"));
    if (!item) return;
    e.preventDefault();
    const file = item.getAsFile();
    handleFile(new File([file], file.name || "pasted-image.png", { type: file.type }));
  });

  // managing the gallery
  els.key.value = sessionStorage.getItem("lookalike-api-key") || "";
  els.key.addEventListener("input", () => {
    sessionStorage.setItem("lookalike-api-key", els.key.value.trim());
    updateAddButton();
    if (lastResult) render(lastResult);
  });
  els.label.addEventListener("input", updateAddButton);
  els.label.addEventListener("keydown", (e) => { if (e.key === "Enter" && !els.add.disabled) addCurrent(); });
  els.add.addEventListener("click", addCurrent);

  loadHealth();
})();
