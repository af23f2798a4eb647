// landseg serve: upload an image, follow its job, show the land-cover overlay, legend, areas and downloads.
// Plain browser JavaScript, no build step; Panzoom (vendored) does zoom and pan.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const POLL_MS = 400;
  const UPLOAD_SHARE = 0.1; // of the progress bar, before the server's own progress
  const state = { model: null, limits: null, job: null, timer: null, panzoom: null, started: 0, fileName: "" };

  // -- small helpers ------------------------------------------------------------------------------
  function el(tag, props = {}, children = []) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props)) {
      if (key === "style") Object.assign(node.style, value);
      else if (key === "dataset") Object.assign(node.dataset, value);
      else node[key] = value;
    }
    for (const child of [].concat(children)) node.append(child);
    return node;
  }
  const swatch = (color) => el("span", { className: "swatch", style: { background: color } });

  function formatBytes(bytes) {
    const units = ["bytes", "KiB", "MiB", "GiB"];
    let value = bytes;
    let unit = 0;
    while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit += 1; }
    return `${Number(value.toFixed(unit ? 1 : 0))} ${units[unit]}`;
  }
  function formatShare(share) {
    if (share === 0) return "0%";
    if (share < 0.001) return "<0.1%";
    return `${(share * 100).toFixed(1)}%`;
  }
  function formatNumber(value, digits) {
    return value.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits });
  }
  function formatArea(row) {
    if (row.area_ha === null) return formatNumber(row.pixels, 0);
    const digits = row.area_ha < 10 ? 2 : row.area_ha < 1000 ? 1 : 0;
    return formatNumber(row.area_ha, digits);
  }

  async function getJSON(url) {
    const response = await fetch(url, { cache: "no-store" });
    const body = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(body.detail || `${response.status} ${response.statusText}`);
    return body;
  }

  // -- status line, progress and errors -----------------------------------------------------------
  function setProgress(fraction, text) {
    $("progress").hidden = false;
    $("progress-bar").style.width = `${Math.round(Math.min(1, Math.max(0, fraction)) * 100)}%`;
    $("progress-text").textContent = text;
  }
  function showError(message) {
    $("error").textContent = message;
    $("error").hidden = false;
    document.body.dataset.state = "error";
  }
  function clearError() { $("error").hidden = true; $("error").textContent = ""; }
  function stopPolling() { if (state.timer) clearTimeout(state.timer); state.timer = null; }

  // -- model card ---------------------------------------------------------------------------------
  function renderModel(model) {
    const miou = model.validation_miou === null ? "not recorded" : model.validation_miou.toFixed(3);
    const arch = model.encoder ? `${model.architecture} (${model.encoder})` : model.architecture;
    $("model-summary").textContent =
      `${arch} · ${model.classes.length} classes · validation mIoU ${miou}`;
    const training = model.training || {};
    const trainedOn = [training.data_set, training.experiment && `experiment “${training.experiment}”`]
      .filter(Boolean).join(", ");
    const images = training.train_images !== undefined
      ? `${training.train_images} training, ${training.val_images ?? 0} validation images` : "";
    const bands = model.band_names ? model.band_names.join(", ") : model.bands.join(", ");
    const facts = [
      ["Checkpoint", model.checkpoint],
      ["Architecture", arch],
      ["Classes", el("div", { className: "chips" }, model.classes.map((c) =>
        el("span", { className: "chip" }, [swatch(c.color), c.name])))],
      ["Trained on", [trainedOn, images].filter(Boolean).join("; ") || "not recorded"],
      ["Validation mIoU", miou],
      ["Input bands", `${bands}${model.input_scale !== 1 ? ` (resampled ×${model.input_scale})` : ""}`],
    ];
    if (training.training_steps !== undefined) facts.push(["Training steps", String(training.training_steps)]);
    if (training.landseg_version) facts.push(["landseg", training.landseg_version]);
    $("model-facts").replaceChildren(...facts.flatMap(([term, value]) => [el("dt", { textContent: term }), el("dd", {}, value)]));
  }

  function renderLimits(limits) {
    const megapixels = (limits.max_pixels / 1e6).toLocaleString("en-US", { maximumFractionDigits: 1 });
    $("limits-hint").textContent =
      `${limits.formats.join(", ")} · up to ${formatBytes(limits.max_upload_bytes)} and ${megapixels} megapixels`;
  }

  // -- viewer: image, overlay, zoom and pan -------------------------------------------------------
  function fitImage() {
    const image = $("image-layer");
    if (!image.naturalWidth) return;
    const stage = $("stage");
    const margin = 24;
    const scale = Math.min((stage.clientWidth - margin) / image.naturalWidth,
                           (stage.clientHeight - margin) / image.naturalHeight);
    const target = $("zoom-target");
    target.style.width = `${Math.max(1, Math.floor(image.naturalWidth * scale))}px`;
    target.style.height = `${Math.max(1, Math.floor(image.naturalHeight * scale))}px`;
    if (state.panzoom) state.panzoom.reset({ animate: false });
    return scale;
  }

  function showImage(url) {
    return new Promise((resolve, reject) => {
      const image = $("image-layer");
      image.onload = () => {
        $("dropzone").hidden = true;
        $("stage").hidden = false;
        $("toolbar").hidden = false;
        const scale = fitImage();  // the stage must be visible to be measured
        if (state.panzoom) state.panzoom.destroy();
        // Zoom in until one screen pixel shows a quarter of an image pixel, whatever the image's size.
        state.panzoom = Panzoom($("zoom-target"), { maxScale: Math.max(8, 4 / scale), minScale: 0.5, step: 0.3 });
        resolve();
      };
      image.onerror = () => reject(new Error("the browser could not show the image preview"));
      image.src = url;
    });
  }

  function setOpacity() {
    const value = Number($("opacity").value);
    $("overlay-layer").style.opacity = String(value / 100);
    $("opacity-value").textContent = `${value}%`;
  }

  // -- results ------------------------------------------------------------------------------------
  function renderLegend(areas) {
    const share = new Map(areas.map((row) => [row.index, row.share]));
    $("legend-list").replaceChildren(...state.model.classes.map((c) => el("li", { dataset: { cls: c.name } }, [
      swatch(c.color), c.name, el("span", { className: "share", textContent: formatShare(share.get(c.index) ?? 0) }),
    ])));
    $("legend").hidden = false;
  }

  function renderAreas(areas, georeferenced) {
    const hasArea = areas.some((row) => row.area_ha !== null);
    $("area-unit").textContent = hasArea ? "Area (ha)" : "Pixels";
    const rows = [...areas].sort((a, b) => b.share - a.share).map((row) => el("tr", {}, [
      el("td", {}, [el("div", { className: "class-cell" }, [swatch(row.color), row.name]),
        el("span", { className: "share-bar", style: { width: `${(row.share * 100).toFixed(1)}%`, background: row.color } })]),
      el("td", { className: "num", textContent: formatShare(row.share) }),
      el("td", { className: "num", textContent: formatArea(row) }),
    ]));
    $("area-table").tBodies[0].replaceChildren(...rows);
    if (!hasArea && georeferenced) $("area-unit").title = "the image's CRS is not projected, so ground areas are unknown";
  }

  function renderDownloads(downloads) {
    $("downloads").replaceChildren(...downloads.map((d) =>
      el("a", { href: d.url, download: d.filename, textContent: d.label, title: d.filename, dataset: { kind: d.kind } })));
  }

  function showResult(job) {
    const overlay = $("overlay-layer");
    overlay.onload = () => {
      overlay.hidden = false;
      setOpacity();
      renderLegend(job.result.areas);
      renderAreas(job.result.areas, job.image.georeferenced);
      renderDownloads(job.result.downloads);
      $("results-card").hidden = false;
      const seconds = (performance.now() - state.started) / 1000;
      document.body.dataset.resultSeconds = seconds.toFixed(2);
      setProgress(1, `Done: map ready ${seconds.toFixed(1)} s after the upload started ` +
                     `(prediction ${job.elapsed_seconds.toFixed(1)} s).`);
      document.body.dataset.state = "done";
    };
    overlay.onerror = () => showError("the browser could not load the land-cover overlay");
    overlay.src = job.result.overlay_url;
  }

  function describeImage(job) {
    const image = job.image;
    const where = image.georeferenced ? `georeferenced (${image.crs})` : "not georeferenced";
    return `${state.fileName}: ${image.width} × ${image.height} px, ${image.bands} band${image.bands === 1 ? "" : "s"} ` +
           `${image.dtype}, ${image.format}, ${where}`;
  }

  function follow(job) {
    state.job = job;
    const fraction = UPLOAD_SHARE + (1 - UPLOAD_SHARE) * job.progress;
    if (job.status === "queued") {
      setProgress(UPLOAD_SHARE, `Waiting for a free worker (position ${job.queue_position} in the queue)…`);
    } else if (job.status === "running") {
      const stage = job.stage.charAt(0).toUpperCase() + job.stage.slice(1);
      setProgress(fraction, `${stage}… ${Math.round(job.progress * 100)}%`);
    } else if (job.status === "done") {
      setProgress(0.99, "Drawing the map…");
      showResult(job);
      return;
    } else {
      showError(`The prediction failed: ${job.error}`);
      return;
    }
    state.timer = setTimeout(() => poll(job.id), POLL_MS);
  }

  async function poll(jobId) {
    try {
      follow(await getJSON(`/api/jobs/${encodeURIComponent(jobId)}`));
    } catch (error) {
      showError(`Lost track of the job: ${error.message}`);
    }
  }

  // -- upload -------------------------------------------------------------------------------------
  function resetResult() {
    $("results-card").hidden = true;
    $("legend").hidden = true;
    $("overlay-layer").hidden = true;
    $("overlay-layer").removeAttribute("src");
    delete document.body.dataset.resultSeconds;
  }

  function upload(file) {
    if (!file) return;
    clearError();
    stopPolling();
    state.fileName = file.name;
    $("job-file").textContent = `${file.name} (${formatBytes(file.size)})`;
    if (state.limits && file.size > state.limits.max_upload_bytes) {
      showError(`${file.name} is ${formatBytes(file.size)}; this server accepts at most ${formatBytes(state.limits.max_upload_bytes)}.`);
      return;
    }
    resetResult();
    const form = new FormData();
    form.append("file", file);
    form.append("tta", $("opt-tta").value);
    form.append("overlap", $("opt-overlap").value);
    form.append("min_area", $("opt-min-area").value || "0");
    form.append("cloud_mask", $("opt-cloud-mask").value);
    state.started = performance.now();
    document.body.dataset.state = "working";
    setProgress(0, `Uploading ${file.name}…`);
    const request = new XMLHttpRequest();
    request.open("POST", "/api/jobs");
    request.responseType = "json";
    request.upload.onprogress = (event) => {
      if (event.lengthComputable) {
        const done = event.loaded / event.total;
        setProgress(UPLOAD_SHARE * done, `Uploading ${file.name}… ${Math.round(done * 100)}%`);
      }
    };
    request.onload = async () => {
      const body = request.response || {};
      if (request.status !== 202) {
        showError(body.detail || `The upload failed (${request.status} ${request.statusText}).`);
        return;
      }
      $("job-file").textContent = describeImage(body);
      try {
        await showImage(body.preview_url);
      } catch (error) {
        showError(error.message);
      }
      follow(body);
    };
    request.onerror = () => showError("The upload did not reach the server: is it still running?");
    request.send(form);
  }

  // -- wiring -------------------------------------------------------------------------------------
  function wire() {
    const input = $("file-input");
    const choose = () => input.click();
    $("dropzone").addEventListener("click", choose);
    $("choose-another").addEventListener("click", choose);
    input.addEventListener("change", () => { upload(input.files[0]); input.value = ""; });

    const viewer = $("viewer");
    let depth = 0;
    viewer.addEventListener("dragenter", (event) => { event.preventDefault(); depth += 1; $("drop-veil").hidden = false; });
    viewer.addEventListener("dragleave", () => { depth -= 1; if (depth <= 0) { depth = 0; $("drop-veil").hidden = true; } });
    viewer.addEventListener("drop", (event) => {
      event.preventDefault();
      depth = 0;
      $("drop-veil").hidden = true;
      upload(event.dataTransfer.files[0]);
    });
    // A file dropped anywhere else must not make the browser navigate away to it.
    for (const type of ["dragover", "drop"]) document.addEventListener(type, (event) => event.preventDefault());

    viewer.addEventListener("wheel", (event) => { if (state.panzoom) state.panzoom.zoomWithWheel(event); }, { passive: false });
    $("zoom-in").addEventListener("click", () => state.panzoom && state.panzoom.zoomIn());
    $("zoom-out").addEventListener("click", () => state.panzoom && state.panzoom.zoomOut());
    $("zoom-fit").addEventListener("click", fitImage);
    $("opacity").addEventListener("input", setOpacity);
    window.addEventListener("resize", fitImage);
  }

  async function start() {
    wire();
    try {
      [state.model, state.limits] = await Promise.all([getJSON("/api/model"), getJSON("/api/limits")]);
      renderModel(state.model);
      renderLimits(state.limits);
      document.body.dataset.state = "ready";
    } catch (error) {
      showError(`Cannot reach the landseg server: ${error.message}`);
    }
  }

  start();
})();
