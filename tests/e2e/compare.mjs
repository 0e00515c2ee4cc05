// Drives the FiftyOne App in headless Chromium through what keeps clusters
// up with the dataset, in the cluster explorer: the Stability column and
// the filter to the dissolving clusters, assign_clusters run from its form
// (opened by the panel's button) and the Assigned column it fills, then
// the comparison with another run (ARI/AMI, the map of the flows, the
// verdict and flow tables), where a click on a cell of the map, on a flow
// row and on a verdict row must show the samples that moved in the grid. Reports what
// the App showed after each step as JSON on the last line of stdout (the
// Python test makes the assertions); screenshots go into the output folder.
//
// Usage: node compare.mjs '<json config>'
//   config: {url, playwrightDir, chromium, outDir, total, otherRun}

import {
  clean,
  config,
  openApp,
  openExplorer,
  run,
  scrollTo,
  shot,
  stepper,
  tableAfter,
  tableContent,
  TIMEOUT,
  waitForCount,
} from "./lib.mjs";

const WAIT = 15000;
const report = { steps: {}, errors: {} };
const step = stepper(report, { failedPrefix: "compare_failed_" });

// Waits until the grid's count reads `n` (or the time is up) and half a
// second more; returns it
function gridShows(page, n, timeout = WAIT) {
  return waitForCount(page, n, timeout, 500);
}

function clustersTable(panel) {
  return tableAfter(panel, "Clusters (click a row");
}

async function main(page, panel) {
  await openApp(page);
  report.start = await gridShows(page, config.total, TIMEOUT);
  await openExplorer(page);
  await panel.locator("table tbody tr").first().waitFor({ timeout: TIMEOUT });
  await page.waitForTimeout(1500);

  await step(page, "stability", async () => {
    const shown = await tableContent(clustersTable(panel));
    await shot(page, "compare_stability.png");
    return shown;
  });

  await step(page, "dissolving", async () => {
    const button = panel.getByRole("button", {
      name: /Show only dissolving clusters/,
    });
    const label = clean(await button.innerText());
    await button.click();
    await panel
      .getByRole("button", { name: "Show all clusters" })
      .waitFor({ timeout: WAIT });
    await page.waitForTimeout(1000);
    const shown = await tableContent(clustersTable(panel));
    await shot(page, "compare_dissolving.png");
    await panel.getByRole("button", { name: "Show all clusters" }).click();
    await panel
      .getByRole("button", { name: /Show only dissolving clusters/ })
      .waitFor({ timeout: WAIT });
    // the table fills again (every cluster) a moment after the button
    let after = await tableContent(clustersTable(panel));
    for (let i = 0; i < 30 && after.rows.length <= shown.rows.length; i++) {
      await page.waitForTimeout(500);
      after = await tableContent(clustersTable(panel));
    }
    return { label, rows: shown.rows, rows_after: after.rows.length };
  });

  await step(page, "assign", async () => {
    await panel.getByRole("button", { name: "Assign new samples" }).click();
    const form = page.getByRole("dialog");
    await form.getByText("Novelty factor", { exact: true }).waitFor();
    await page.waitForTimeout(1500);
    const formText = clean(await form.innerText());
    await shot(page, "compare_assign_form.png");
    await form.getByRole("button", { name: "Execute" }).click();
    const done = page.getByText("Fields written", { exact: false }).first();
    await done.waitFor({ timeout: 120000 });
    await page.waitForTimeout(1000);
    const dialog = page.getByRole("dialog").filter({ has: done });
    const result = clean(await dialog.innerText());
    await shot(page, "compare_assign_result.png");
    await dialog.getByRole("button", { name: "Done" }).click();
    await dialog.waitFor({ state: "hidden" });
    await panel
      .locator("table thead th", { hasText: "Assigned" })
      .first()
      .waitFor({ timeout: WAIT });
    await page.waitForTimeout(1000);
    const shown = await tableContent(clustersTable(panel));
    await shot(page, "compare_assigned_column.png");
    return { form: formText, result, ...shown };
  });

  await step(page, "compare", async () => {
    await panel
      .locator(
        'xpath=.//*[normalize-space()="Compare with run"]' +
          '/following::*[@role="combobox"][1]'
      )
      .click();
    await page
      .getByRole("option")
      .filter({ hasText: config.otherRun })
      .first()
      .click();
    const text = panel.getByText("shared samples", { exact: false }).first();
    await text.waitFor({ timeout: WAIT });
    await tableAfter(panel, "Verdicts (click")
      .locator("tbody tr")
      .first()
      .waitFor({ timeout: WAIT });
    await page.waitForTimeout(2000);
    const verdicts = await tableContent(tableAfter(panel, "Verdicts (click"));
    const flows = await tableContent(tableAfter(panel, "Largest flows"));
    const map = await flowMap(panel);
    await scrollTo(text);
    await shot(page, "compare_runs.png");
    await shot(panel.locator(".js-plotly-plot").last(), "compare_map.png");
    return { text: clean(await text.innerText()), verdicts, flows, map };
  });

  await step(page, "flow_row", async () => {
    const table = tableAfter(panel, "Largest flows");
    const shown = await tableContent(table);
    const i = shown.rows.findIndex((r) => r[3] === "moved");
    const row = i >= 0 ? i : 0;
    await table.locator("tbody tr").nth(row).locator("td").first().click();
    const n = parseInt(shown.rows[row][2], 10);
    const grid = await gridShows(page, n);
    await page.waitForTimeout(1000);
    const note = await panel
      .getByText("The grid shows", { exact: false })
      .first()
      .innerText({ timeout: WAIT })
      .catch(() => null);
    await shot(page, "compare_flow_row.png");
    return { row: shown.rows[row], grid, note: clean(note) };
  });

  await step(page, "verdict_row", async () => {
    const table = tableAfter(panel, "Verdicts (click");
    const shown = await tableContent(table);
    // the row with the most samples moved
    let row = 0;
    shown.rows.forEach((r, i) => {
      if (parseInt(r[6], 10) > parseInt(shown.rows[row][6], 10)) row = i;
    });
    await table.locator("tbody tr").nth(row).locator("td").first().click();
    const grid = await gridShows(page, parseInt(shown.rows[row][6], 10));
    await shot(page, "compare_verdict_row.png");
    return { row: shown.rows[row], grid };
  });

  // A click on the largest orange cell of the map, where the mouse is
  await step(page, "map_click", async () => {
    const map = await flowMap(panel);
    let best = null;
    for (const c of map.cells) {
      const better = !best || c.count > best.count;
      if (c.trace.startsWith("moved") && better) best = c;
    }
    const box = await panel.locator(".js-plotly-plot").last().boundingBox();
    const x = box.x + best.px;
    const y = box.y + best.py;
    await page.mouse.move(x, y, { steps: 5 });
    await page.waitForTimeout(500);
    await page.mouse.click(x, y);
    // the grid may already show as many samples (the step before): wait
    // for the note that names this cell's two clusters
    const note = await panel
      .getByText(`that are in cluster ${best.col} of`, { exact: false })
      .first()
      .innerText({ timeout: WAIT })
      .catch(() => null);
    const grid = await gridShows(page, best.count);
    await shot(page, "compare_map_click.png");
    return { cell: best, grid, note: clean(note) };
  });

  // A drag across the map, as a user trying to select: the map must not
  // zoom (its axes' ranges stay)
  await step(page, "map_drag", async () => {
    const plot = panel.locator(".js-plotly-plot").last();
    const ranges = () =>
      plot.evaluate((gd) => [
        gd._fullLayout.xaxis.range.slice(),
        gd._fullLayout.yaxis.range.slice(),
      ]);
    const before = await ranges();
    const { cells } = await flowMap(panel);
    const box = await plot.boundingBox();
    const [from, to] = [cells[0], cells[cells.length - 1]];
    await page.mouse.move(box.x + from.px, box.y + from.py);
    await page.mouse.down();
    await page.mouse.move(box.x + to.px, box.y + to.py, { steps: 10 });
    await page.mouse.up();
    await page.waitForTimeout(1000);
    await shot(page, "compare_map_dragged.png");
    return { before, after: await ranges() };
  });
}

// The flow map as Plotly drew it: its traces' types, its axes' clusters,
// and each non-empty cell with its count and its centre in pixels from
// the plot's corner
async function flowMap(panel) {
  return panel
    .locator(".js-plotly-plot")
    .last()
    .evaluate((gd) => {
      const xa = gd._fullLayout.xaxis;
      const ya = gd._fullLayout.yaxis;
      const cells = [];
      for (const t of gd.data) {
        t.y.forEach((row, i) =>
          t.x.forEach((col, j) => {
            if (t.z[i][j] === null || t.z[i][j] === undefined) return;
            cells.push({
              trace: t.name,
              row,
              col,
              count: t.text[i][j],
              // a category axis's linear coordinate is the index
              px: xa._offset + xa.l2p(j),
              py: ya._offset + ya.l2p(i),
            });
          })
        );
      }
      return {
        types: gd.data.map((t) => t.type),
        rows: gd.data[0].y,
        cols: gd.data[0].x,
        xtitle: xa.title && xa.title.text,
        ytitle: ya.title && ya.title.text,
        cells,
      };
    });
}

await run(main, {
  report,
  name: "compare",
  viewport: { width: 1600, height: 1100 },
  pageErrors: true,
});
