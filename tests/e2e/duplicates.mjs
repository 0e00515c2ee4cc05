// Drives the FiftyOne App in headless Chromium through near duplicates and
// subsets from the cluster explorer, and reports what the App showed after
// each step as JSON on the last line of stdout; the Python test
// (test_duplicates_in_app.py) makes the assertions. Screenshots go into
// the output folder.
//
// Steps: open the panel; "Find duplicates" opens the operator's form with
// the run preset: the nearest-neighbour histogram (a Plotly bar chart), the
// counts per threshold and example pairs as thumbnails (images through the
// App's /media route) must render; run it and read the result; the panel
// then shows the Duplicates column; "Show N duplicate groups" puts the
// groups in the grid; "Similarity histogram" draws the histogram in the
// panel; a cluster's "Show its duplicate groups"; "Select N" opens
// select_subset with the run preset, runs it, and the grid shows the subset.
// A step that fails records its error and the next steps still run.
//
// Usage: node duplicates.mjs '<json config>'
//   config: {url, playwrightDir, chromium, outDir, total, dupKey, n}

import {
  cells,
  clean,
  config,
  headerTexts,
  inputAfter,
  openApp,
  openExplorer,
  run,
  saveReport,
  scrollTo,
  shot,
  stepper,
  TIMEOUT,
  waitForCount,
} from "./lib.mjs";

const WAIT = 20000;
const report = { steps: {}, errors: {} };
const step = stepper(report, {
  failedPrefix: "failed_dup_",
  deadline: Date.now() + 400000, // later steps are skipped
});

// The bars the last Plotly chart inside `scope` draws (height and colour
// of each), once some bar has a height
async function plotBars(scope) {
  const plot = scope.locator(".js-plotly-plot").last();
  const read = () =>
    plot.locator(".bars .point path").evaluateAll((paths) =>
      paths.map((p) => {
        const box = p.getBBox();
        return {
          height: Math.round(box.height),
          fill: getComputedStyle(p).fill || p.style.fill,
        };
      })
    );
  const end = Date.now() + WAIT;
  let bars = await read();
  while (!bars.some((b) => b.height > 0) && Date.now() < end) {
    await scope.page().waitForTimeout(300);
    bars = await read();
  }
  if (!bars.some((b) => b.height > 0)) {
    const plots = await scope.locator(".js-plotly-plot").count();
    throw new Error(`no bars drawn (${plots} plots, ${bars.length} paths)`);
  }
  return bars;
}

// The example pairs' thumbnails: their sources and whether they loaded
async function thumbnails(scope) {
  return scope.locator('img[src*="/media?filepath="]').evaluateAll((imgs) =>
    imgs.map((img) => {
      const box = img.getBoundingClientRect();
      return {
        src: img.getAttribute("src"),
        loaded: img.complete && img.naturalWidth > 0,
        width: img.naturalWidth,
        top: Math.round(box.top),
        left: Math.round(box.left),
      };
    })
  );
}

async function waitForImages(scope) {
  const imgs = scope.locator('img[src*="/media?filepath="]');
  await imgs.first().waitFor({ timeout: WAIT });
  await scope
    .page()
    .waitForFunction(
      () =>
        Array.from(
          document.querySelectorAll('img[src*="/media?filepath="]')
        ).every((img) => img.complete),
      null,
      { timeout: WAIT }
    )
    .catch(() => {});
}

async function headers(panel) {
  return headerTexts(panel.locator("table"));
}

async function rows(panel) {
  return cells(panel.locator("table tbody tr"));
}

async function findDuplicates(page, panel) {
  await panel.getByRole("button", { name: "Find duplicates" }).click();
  const dialog = page.getByRole("dialog");
  await dialog.getByText("Duplicates run key", { exact: true }).waitFor();
  const bars = await plotBars(dialog);
  await page.waitForTimeout(1500);
  report.form_images = await dialog
    .locator("img")
    .evaluateAll((imgs) => imgs.map((i) => i.outerHTML.slice(0, 300)));
  report.form_html = await dialog
    .getByText("Pairs just above it")
    .first()
    .evaluate((el) => el.parentElement.innerHTML.slice(0, 3000))
    .catch((e) => e.message);
  saveReport(report);
  await waitForImages(dialog);
  const form = clean(await dialog.innerText());
  const field = await inputAfter(dialog, "Near duplicates are compared")
    .inputValue()
    .catch(() => null);
  await shot(page, "duplicates_form.png");
  // the example pairs, scrolled into view
  await scrollTo(dialog.locator('img[src*="/media?filepath="]').first());
  await page.waitForTimeout(500);
  await shot(page, "duplicates_form_pairs.png");
  const thumbs = await thumbnails(dialog);

  await inputAfter(dialog, "A name for this run").fill(config.dupKey);
  await page.keyboard.press("Tab");
  await page.waitForTimeout(2000); // the form resolves again
  await dialog.getByRole("button", { name: "Execute" }).click();
  const done = page.getByText("groups of duplicates", { exact: false });
  await done.first().waitFor({ timeout: 120000 });
  await page.waitForTimeout(1000);
  const shown = page.getByRole("dialog").filter({ has: done.first() });
  const result = clean(await shown.innerText());
  await shot(page, "duplicates_result.png");
  await shown.getByRole("button", { name: "Done" }).click();
  await shown.waitFor({ state: "hidden" });
  return { bars, thumbs, form, field, result };
}

async function column(page, panel) {
  await panel
    .locator("table thead th", { hasText: "Duplicates" })
    .first()
    .waitFor({ timeout: WAIT });
  await page.waitForTimeout(1000);
  const text = clean(await panel.innerText());
  return { headers: await headers(panel), rows: await rows(panel), text };
}

async function showGroups(page, panel) {
  const button = panel.getByRole("button", { name: /duplicate groups$/ });
  const label = clean(await button.first().innerText());
  await button.first().click();
  const count = await waitForCount(page, config.inGroups);
  await page.waitForTimeout(2500); // thumbnails
  await shot(page, "duplicates_groups_grid.png");
  return { label, count };
}

async function histogram(page, panel) {
  await panel.getByRole("button", { name: "Similarity histogram" }).click();
  await panel
    .getByText("Similarity of each sample to its nearest neighbour")
    .waitFor({ timeout: WAIT });
  const bars = await plotBars(panel);
  await waitForImages(panel);
  const text = clean(await panel.innerText());
  const thumbs = await thumbnails(panel);
  // the table with its Duplicates column, and the histogram below it
  await panel
    .getByText("Similarity of each sample to its nearest neighbour")
    .evaluate((el) => el.scrollIntoView({ block: "center" }));
  await page.waitForTimeout(800);
  await shot(page, "explorer_duplicates.png");
  await scrollTo(panel.getByText("Pairs just above it"));
  await page.waitForTimeout(800);
  await shot(page, "explorer_duplicates_pairs.png");
  return { bars, text, thumbs };
}

async function clusterGroups(page, panel) {
  // the row of the cluster with the most samples not kept
  const heads = await headers(panel);
  const at = heads.findIndex((h) => h.startsWith("Duplicates"));
  const cells = (await rows(panel)).map((r) => parseInt(r[at], 10) || 0);
  const best = cells.indexOf(Math.max(...cells));
  await panel
    .locator("table tbody tr")
    .nth(best)
    .locator("td")
    .first()
    .click();
  const button = panel.getByRole("button", { name: /^Show its duplicate/ });
  await button.waitFor({ timeout: WAIT });
  const label = clean(await button.innerText());
  const n = parseInt(label.match(/\((\d+) samples\)/)[1], 10);
  await button.click();
  const count = await waitForCount(page, n);
  await page.waitForTimeout(2000);
  await shot(page, "duplicates_cluster_groups.png");
  // the cluster is still selected: its actions (and this button) remain
  const still = await panel
    .getByRole("button", { name: /^Show its duplicate/ })
    .count();
  return { label, count, still_selected: still === 1 };
}

async function selectN(page, panel) {
  await panel.getByRole("button", { name: "Select N" }).click();
  const dialog = page.getByRole("dialog");
  await dialog.getByText("Samples to select", { exact: true }).waitFor();
  await page.waitForTimeout(1500);
  const form = clean(await dialog.innerText());
  const parts = await inputAfter(dialog, "Parts per cluster").inputValue();
  await inputAfter(dialog, "An equal share per cluster").fill(
    String(config.n)
  );
  await page.keyboard.press("Tab");
  await page.waitForTimeout(2000);
  await shot(page, "duplicates_select_form.png");
  await dialog.getByRole("button", { name: "Execute" }).click();
  const done = page.getByText("Subset of", { exact: false });
  await done.first().waitFor({ timeout: 120000 });
  await page.waitForTimeout(1000);
  const shown = page.getByRole("dialog").filter({ has: done.first() });
  const result = clean(await shown.innerText());
  await shown.getByRole("button", { name: "Done" }).click();
  await shown.waitFor({ state: "hidden" });
  const count = await waitForCount(page, config.n);
  await page.waitForTimeout(2500);
  await shot(page, "duplicates_subset_grid.png");
  return { form, parts, result, count };
}

async function main(page, panel) {
  await openApp(page);
  report.start = await waitForCount(page, config.total, TIMEOUT);
  await openExplorer(page);
  await panel.locator("table tbody tr").first().waitFor({ timeout: TIMEOUT });
  report.before = { headers: await headers(panel) };

  await step(page, "find", () => findDuplicates(page, panel));
  await step(page, "column", () => column(page, panel));
  await step(page, "groups", () => showGroups(page, panel));
  await step(page, "histogram", () => histogram(page, panel));
  await step(page, "cluster_groups", () => clusterGroups(page, panel));
  await step(page, "select", () => selectN(page, panel));
}

await run(main, { report, name: "duplicates" });
