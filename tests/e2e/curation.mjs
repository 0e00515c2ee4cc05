// Drives the FiftyOne App in headless Chromium through the label audit and
// the outlier scores as a user clicks through them in the cluster
// explorer: opens the panel from the "+" menu, clicks "Audit labels"
// (the form opens with the run and the label field preset), runs it and
// reads the result dialog; the table gains the curation columns; clicks
// "Outliers", asks for the top few, runs it and reads the result; selects
// the first cluster that has suspects and shows its suspects in the grid;
// tags them from the "Tag" input next to "Tag shown"; then shows the
// run's outliers. Reports what it saw after each step as JSON on the last
// line of stdout (and in report.json after every step); the Python test
// (test_curation_in_app.py) makes the assertions. A step that fails
// records its error, and the steps after it still run. Screenshots go into
// the output folder.
//
// Usage: node curation.mjs '<json config>'
//   config: {url, playwrightDir, chromium, outDir, total, top, tag}

import {
  cells,
  clean,
  config,
  gridCount,
  inputAfter,
  log,
  openApp,
  openExplorer,
  run,
  scrollTo,
  shot,
  stepper,
  TIMEOUT,
  typeInto,
  waitForCount,
} from "./lib.mjs";

const WAIT = 20000; // for what the App shows after a click
const RUN_WAIT = 120000; // for an operator's result
const report = { steps: {}, errors: {} };
const step = stepper(report, { failedPrefix: "curation_failed_" });

// The labels the grid's `n` tiles show (`ground_truth` tags on the
// thumbnails), once all `n` have loaded
async function tileLabels(page, n) {
  await page
    .waitForFunction(
      (n) =>
        document.querySelectorAll(
          '[data-cy="looker"] canvas[canvas-loaded="true"]'
        ).length === n,
      n,
      { timeout: WAIT }
    )
    .catch(() => log(`the grid never showed ${n} loaded thumbnails`));
  await page.waitForTimeout(1000); // their labels
  return page
    .locator('[data-cy="looker"] [data-cy="tag-ground_truth"]')
    .allInnerTexts();
}

// Before a screenshot of the whole grid: its thumbnails drawn again after
// a dataset reload, and no hover on the panel's buttons
async function settled(page) {
  await page.mouse.move(1, 1);
  await page
    .waitForFunction(
      () =>
        document.querySelectorAll(
          '[data-cy="looker"] canvas[canvas-loaded="true"]'
        ).length > 0,
      null,
      { timeout: WAIT }
    )
    .catch(() => log("the grid showed no thumbnail"));
  await page.waitForTimeout(1000);
}

// The cluster table as the App shows it: headers and rows of cells
async function table(panel) {
  // the part of the table after the selected cluster hides its headers
  const headers = (
    await panel.locator("table").first().locator("thead th").allInnerTexts()
  ).map(clean);
  const rows = await cells(panel.locator("table tbody tr"));
  return { headers, rows };
}

// A button's text without its icon's name (the icon is a ligature)
function withoutIcon(text) {
  return clean(text.trim().split("\n").slice(-1)[0]);
}

async function buttonText(button) {
  return withoutIcon(await button.innerText());
}

// The panel's buttons, by their text
async function buttons(panel) {
  const texts = await panel.getByRole("button").allInnerTexts();
  return texts.map(withoutIcon);
}

// Waits until the table's headers include `header`
async function waitForHeader(page, panel, header) {
  const end = Date.now() + WAIT;
  let now = await table(panel);
  while (!now.headers.includes(header) && Date.now() < end) {
    await page.waitForTimeout(300);
    now = await table(panel);
  }
  await page.waitForTimeout(800); // and stays so (late patches)
  return table(panel);
}

// The table and the panel's buttons once the table shows the column
// `header`, the whole grid drawn
async function columnShown(page, panel, header, shotName) {
  const shown = await waitForHeader(page, panel, header);
  await scrollTo(panel.locator("table").first());
  await settled(page);
  await shot(page, shotName);
  return { ...shown, buttons: await buttons(panel) };
}

// The value a form's dropdown shows, after its label
async function dropdownValue(dialog, label) {
  return clean(
    await dialog
      .locator(
        `xpath=.//*[normalize-space()=${JSON.stringify(label)}]` +
          '/following::*[@role="combobox"][1]'
      )
      .first()
      .innerText()
  );
}

// Runs the open form and reads the result the App shows in its place,
// `headline` in bold at its top; closes it with Done
async function execute(page, dialog, headline, shotName) {
  await dialog.getByRole("button", { name: "Execute" }).click();
  const title = page.getByText(headline, { exact: true }).first();
  await title.waitFor({ timeout: RUN_WAIT });
  await page.waitForTimeout(1000);
  const shown = page.getByRole("dialog").filter({ has: title });
  const out = {
    text: await shown.innerText(),
    dialogs: await page.getByRole("dialog").count(),
  };
  await shot(page, shotName);
  await shown.getByRole("button", { name: "Done" }).click();
  await shown.waitFor({ state: "hidden" });
  return out;
}

// The selected cluster's title ("Cluster 3: 14 samples"), if one shows
async function selectedTitle(panel) {
  const title = panel.locator("p", { hasText: /^\s*Cluster \d+\b/ }).first();
  return (await title.count()) ? clean(await title.innerText()) : null;
}

async function main(page, panel) {
  await openApp(page);
  report.start = await waitForCount(page, config.total, TIMEOUT);

  await step(page, "open", async () => {
    await openExplorer(page);
    await panel.locator("table tbody tr").first().waitFor();
    await page.waitForTimeout(1500);
    await shot(page, "curation_panel.png");
    return { ...(await table(panel)), buttons: await buttons(panel) };
  });

  // "Audit labels": the form opens with the run and the label field
  await step(page, "audit_form", async () => {
    await panel.getByRole("button", { name: "Audit labels" }).click();
    const dialog = page.getByRole("dialog");
    await dialog.getByText("Label field", { exact: true }).waitFor();
    await page.waitForTimeout(1500); // the form resolves
    const out = {
      run: await dropdownValue(dialog, "Clustering run"),
      label_field: await dropdownValue(dialog, "Label field"),
      threshold: await inputAfter(dialog, "Samples at or above").inputValue(),
      text: await dialog.innerText(),
    };
    await shot(page, "curation_audit_form.png");
    return out;
  });
  await step(page, "audit_result", () =>
    execute(
      page,
      page.getByRole("dialog"),
      "Labels audited",
      "curation_audit_result.png"
    )
  );
  await step(page, "audited", () =>
    columnShown(page, panel, "Purity", "curation_audited.png")
  );

  // "Outliers": the top few
  await step(page, "outliers_form", async () => {
    await panel.getByRole("button", { name: "Outliers", exact: true }).click();
    const dialog = page.getByRole("dialog");
    await dialog.getByText("Top samples", { exact: true }).waitFor();
    await page.waitForTimeout(1500);
    const top = inputAfter(dialog, "How many of the most unusual");
    await typeInto(page, top, config.top);
    const out = {
      run: await dropdownValue(dialog, "Clustering run"),
      top: await top.inputValue(),
      text: await dialog.innerText(),
    };
    await shot(page, "curation_outliers_form.png");
    return out;
  });
  await step(page, "outliers_result", () =>
    execute(
      page,
      page.getByRole("dialog"),
      "Outliers scored",
      "curation_outliers_result.png"
    )
  );
  await step(page, "scored", () =>
    columnShown(page, panel, "Outliers", "curation_columns.png")
  );

  // The first cluster with suspects: its row, then its suspects
  await step(page, "select", async () => {
    const { headers, rows } = await table(panel);
    const col = headers.indexOf("Suspects");
    const sizeCol = headers.findIndex((h) => h.startsWith("Size"));
    const row = rows.find((r) => parseInt(r[col], 10) > 0);
    if (!row) throw new Error(`no row with suspects: ${JSON.stringify(rows)}`);
    const cid = row[0];
    await panel
      .locator("table tbody tr")
      .filter({
        has: page.locator("td:first-child", {
          hasText: new RegExp(`^\\s*${cid}\\s*$`),
        }),
      })
      .locator("td")
      .first()
      .click();
    const count = await waitForCount(page, parseInt(row[sizeCol], 10));
    await panel
      .getByText(`Cluster ${cid}`, { exact: true })
      .first()
      .waitFor({ timeout: WAIT });
    await page.waitForTimeout(1000);
    return {
      cluster: cid,
      row,
      count,
      title: await selectedTitle(panel),
      buttons: await buttons(panel),
    };
  });
  await step(page, "cluster_suspects", async () => {
    const button = panel.getByRole("button", {
      name: /^Show its \d+ suspects$/,
    });
    const label = await buttonText(button);
    const n = parseInt(label.match(/\d+/)[0], 10);
    await button.click();
    const count = await waitForCount(page, n);
    const labels = await tileLabels(page, n);
    await page.waitForTimeout(500);
    const out = {
      button: label,
      count,
      labels,
      title: await selectedTitle(panel),
      table: await table(panel),
      buttons: await buttons(panel),
    };
    await shot(page, "curation_cluster_suspects.png");
    return out;
  });

  // Tag what the grid shows
  await step(page, "tag", async () => {
    const button = panel.getByRole("button", { name: "Tag shown" });
    await button.waitFor({ timeout: WAIT });
    const input = inputAfter(panel, "Adds this tag to every sample the grid");
    await scrollTo(input);
    await input.click();
    await input.fill(config.tag);
    await page.waitForTimeout(1000); // the panel's state takes it
    await button.click();
    const note = page.getByText(/^Tagged \d+ /).first();
    const message = await note
      .waitFor({ timeout: WAIT })
      .then(() => note.innerText())
      .catch(() => null);
    await page.waitForTimeout(1000);
    await shot(page, "curation_tagged.png");
    const box = async (locator) => {
      const b = await locator.boundingBox();
      return b && { x: b.x, width: b.width };
    };
    return {
      message: message && clean(message),
      count: await gridCount(page),
      title: await selectedTitle(panel),
      // where the input and the button sit, within the panel
      input: await box(input),
      button: await box(button),
      panel: await box(panel),
    };
  });

  // The run's outliers
  await step(page, "run_outliers", async () => {
    const button = panel.getByRole("button", {
      name: /^Show [\d,]+ outliers$/,
    });
    const label = await buttonText(button);
    await button.click();
    const n = parseInt(label.match(/\d+/)[0], 10);
    const count = await waitForCount(page, n);
    const labels = await tileLabels(page, n);
    const out = {
      button: label,
      count,
      labels,
      title: await selectedTitle(panel),
      table: await table(panel),
    };
    await shot(page, "curation_run_outliers.png");
    return out;
  });
}

await run(main, {
  report,
  name: "curation",
  viewport: { width: 1600, height: 1300 },
});
