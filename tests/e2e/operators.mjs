// Drives the FiftyOne App in headless Chromium through the compute_clusters
// form as a new user would: opens it from "Browse operations", types an
// embeddings field that does not exist and a k larger than the dataset
// (both must be refused inline, in the form), then runs it and reads the
// result dialog, the progress shown while it ran, and the sidebar; then
// opens the run's info, runs one that only execution can refuse, and
// projects the run from the cluster explorer with the grid on one cluster.
// Reports what it saw as JSON on the last line of stdout; screenshots go
// into the output folder.
//
// Usage: node operators.mjs '<json config>'
//   config: {url, playwrightDir, chromium, outDir, total, runKey,
//            field, k, tooLargeK}

import {
  config,
  inputAfter,
  log,
  openApp,
  openExplorer,
  run,
  shot,
  TIMEOUT,
  typeInto,
} from "./lib.mjs";

const report = {};

async function openForm(page, label) {
  await page.locator('[data-cy="action-browse-operations"]').first().click();
  const browser = page.locator('[data-cy="operators-browser"]');
  await browser.waitFor({ timeout: TIMEOUT });
  await page.keyboard.type(label, { delay: 20 });
  await browser.getByText(label, { exact: true }).first().click();
  const dialog = page.getByRole("dialog");
  await dialog.getByText("Run key", { exact: true }).waitFor();
  return dialog;
}

// Collects every progress label the App shows ("40%: clustering")
async function watchProgress(page) {
  await page.evaluate(() => {
    window.__progress = [];
    const seen = new Set();
    const check = () => {
      const text = document.body.innerText || "";
      for (const m of text.matchAll(/\b\d{1,3}%: [a-z ]+/g)) {
        if (!seen.has(m[0])) {
          seen.add(m[0]);
          window.__progress.push(m[0]);
        }
      }
    };
    new MutationObserver(check).observe(document.body, {
      subtree: true,
      childList: true,
      characterData: true,
    });
  });
}

// The explorer's "Compute projection" while the grid shows one cluster:
// the form defaults to the run's whole view and says so
async function projectFromACluster(page, panel) {
  await openExplorer(page);
  const row = panel.locator("table tbody tr").first();
  await row.waitFor({ timeout: TIMEOUT });
  await row.locator("td").first().click();
  await page.waitForFunction(
    (total) => {
      const el = document.querySelector('[data-cy="entry-counts"]');
      const m = el && el.innerText.replace(/,/g, "").match(/\d+/);
      return m && parseInt(m[0], 10) < total;
    },
    config.total,
    { timeout: TIMEOUT }
  );
  report.grid_count = await page
    .locator('[data-cy="entry-counts"]')
    .innerText();
  await panel.getByRole("button", { name: "Compute projection" }).click();
  const form = page.getByRole("dialog");
  await form.getByText("Brain key", { exact: true }).waitFor();
  await page.waitForTimeout(1500);
  report.projection_form = await form.innerText();
  report.brain_key = await inputAfter(form, "The name the Embeddings")
    .inputValue()
    .catch(() => null);
  await shot(page, "operators_projection_form.png");
  await form.getByText("UMAP", { exact: true }).first().click();
  await page.locator('li[role="option"][data-value="pca"]').click();
  await page.waitForTimeout(1500);
  await form.getByRole("button", { name: "Execute" }).click();
  const done = page.getByText("samples projected", { exact: false }).first();
  await done.waitFor({ timeout: 120000 });
  const shown = page.getByRole("dialog").filter({ has: done });
  report.projection_result = await shown.innerText();
  await shot(page, "operators_projection_result.png");
  await shown.getByRole("button", { name: "Done" }).click();
  await shown.waitFor({ state: "hidden" });
}

async function main(page, panel) {
  await openApp(page);
  await page.locator('[data-cy="entry-counts"]').waitFor({ timeout: TIMEOUT });

  const dialog = await openForm(page, "Compute clusters");
  await shot(page, "operators_form.png");

  // An embeddings field that does not exist: refused in the form
  const field = inputAfter(dialog, "The vector field to cluster");
  await typeInto(page, field, "missing");
  report.field_error = await dialog
    .getByText("has no field", { exact: false })
    .first()
    .innerText({ timeout: 10000 })
    .catch(() => null);
  await shot(page, "operators_form_missing_field.png");
  log(`field error: ${report.field_error}`);
  await typeInto(page, field, config.field);

  // A run key, k-means, and a k larger than the dataset
  await typeInto(page, inputAfter(dialog, "A name for this run"), config.runKey);
  await dialog.getByText("HDBSCAN", { exact: true }).first().click();
  await page.locator('li[role="option"][data-value="kmeans"]').click();
  await page.waitForTimeout(1500);
  const k = inputAfter(dialog, "Number of clusters");
  await typeInto(page, k, config.tooLargeK);
  report.k_error = await dialog
    .getByText("larger than the", { exact: false })
    .first()
    .innerText({ timeout: 10000 })
    .catch(() => null);
  report.execute_enabled_with_error = await dialog
    .getByRole("button", { name: "Execute" })
    .isEnabled()
    .catch(() => null);
  await shot(page, "operators_form_too_large_k.png");
  log(`k error: ${report.k_error}`);

  // A valid k: run it and read what the App shows
  await typeInto(page, k, config.k);
  await watchProgress(page);
  await dialog.getByRole("button", { name: "Execute" }).click();
  const result = page.getByText("Fields written", { exact: false }).first();
  await result.waitFor({ timeout: 120000 });
  await page.waitForTimeout(1000);
  const shown = page.getByRole("dialog").filter({ has: result });
  report.dialogs = await page.getByRole("dialog").count();
  report.result_text = await shown.innerText();
  report.progress = await page.evaluate(() => window.__progress);
  await shot(page, "operators_result.png");
  log(`result: ${report.result_text}`);

  // Close it: the sidebar shows the fields the run wrote
  await shown.getByRole("button", { name: "Done" }).click();
  await shown.waitFor({ state: "hidden" });
  const entry = page.locator(
    `[data-cy="sidebar-field-${config.runKey}_cluster"]`
  );
  await entry.first().waitFor({ timeout: 20000 }).catch(() => {});
  report.sidebar_has_field = (await entry.count()) > 0;
  report.sidebar_text = await page
    .locator('[data-cy="sidebar-column"]')
    .first()
    .innerText()
    .catch(() => "");
  await shot(page, "operators_sidebar.png");

  // The run's info: its summary first, the per-cluster details last
  const info = await openForm(page, "Get clustering run info");
  await info.locator('[role="combobox"]').first().click();
  await page.locator(`li[role="option"][data-value="${config.runKey}"]`).click();
  await page.waitForTimeout(1000);
  await info.getByRole("button", { name: "Execute" }).click();
  const summary = page.getByText("lower is better", { exact: false }).first();
  await summary.waitFor({ timeout: TIMEOUT });
  await page.waitForTimeout(1000);
  report.info_text = await page
    .getByRole("dialog")
    .filter({ has: summary })
    .innerText();
  await shot(page, "operators_run_info.png");
  await info.getByRole("button", { name: "Close" }).click();
  await info.waitFor({ state: "hidden" });

  // A run that only execution can refuse (HDBSCAN finds no cluster)
  const again = await openForm(page, "Compute clusters");
  await typeInto(page, inputAfter(again, "A name for this run"), "allnoise");
  await typeInto(page, inputAfter(again, "Smallest group"), config.noiseMcs);
  await again.getByText("Auto", { exact: true }).first().click();
  await page.locator('li[role="option"][data-value="none"]').click();
  await page.waitForTimeout(1500);
  await again.getByRole("button", { name: "Execute" }).click();
  const failed = page.getByText("compute clusters failed", { exact: false });
  await failed.first().waitFor({ timeout: 120000 });
  await page.waitForTimeout(1500);
  report.failure_text = await page
    .getByRole("dialog")
    .filter({ has: failed })
    .first()
    .innerText();
  report.page_text = await page.locator("body").innerText();
  await shot(page, "operators_failure.png");
  await page
    .getByRole("dialog")
    .filter({ has: failed })
    .first()
    .getByRole("button", { name: "Done" })
    .click();
  await page
    .getByRole("dialog")
    .getByRole("button", { name: "Close" })
    .click({ timeout: 5000 })
    .catch(() => {});
  await page.waitForTimeout(500);

  await projectFromACluster(page, panel);
}

await run(main, { report, name: "operators" });
