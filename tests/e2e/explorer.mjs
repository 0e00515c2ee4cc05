// Drives the FiftyOne App in headless Chromium through the cluster explorer:
// opens the panel from the "+" menu, clicks a bar of the size chart and a
// row of the cluster table, renames a cluster, goes back to every sample,
// and reports what the sample grid showed after each step as JSON on the
// last line of stdout. Screenshots go into the output folder.
//
// Usage: node explorer.mjs '<json config>'
//   config: {url, playwrightDir, chromium, outDir, total, sizes: {id: n},
//            bar: index, row: index, label: "new name"}

import { createRequire } from "module";
import path from "path";

const config = JSON.parse(process.argv[2]);
const require = createRequire(path.join(config.playwrightDir, "noop.js"));
const { chromium } = require("playwright-core");

const TIMEOUT = 30000;
const report = { steps: [] };

function log(message) {
  process.stderr.write(`[e2e] ${message}\n`);
}

async function countText(page) {
  return (await page.locator('[data-cy="entry-counts"]').innerText()).trim();
}

// Waits until the grid's sample count reads `n`; returns the text shown
async function waitForCount(page, n) {
  try {
    await page.waitForFunction(
      (n) => {
        const el = document.querySelector('[data-cy="entry-counts"]');
        if (!el) return false;
        const m = el.innerText.replace(/,/g, "").match(/\d+/);
        return m !== null && parseInt(m[0], 10) === n;
      },
      n,
      { timeout: TIMEOUT }
    );
  } catch (e) {
    log(`count never became ${n}: ${e.message.split("\n")[0]}`);
  }
  return countText(page);
}

async function main(page, panel) {
  await page.goto(config.url);
  // A promotional popup may cover the page
  await page
    .getByText("Dismiss", { exact: true })
    .click({ timeout: 8000 })
    .catch(() => {});
  report.start = await waitForCount(page, config.total);
  log(`grid: ${report.start}`);

  await page.locator('[data-cy="new-panel-btn"]').first().click();
  await page.locator('[data-cy="new-panel-option-cluster_explorer"]').click();
  const bars = panel.locator(".js-plotly-plot .bars .point path");
  await bars.first().waitFor({ timeout: TIMEOUT });
  await panel.locator("table tbody tr").first().waitFor({ timeout: TIMEOUT });
  report.bars = await panel
    .locator(".js-plotly-plot .xtick text")
    .evaluateAll((els) => els.map((e) => e.textContent.trim()));
  report.rows = await panel.locator("table tbody tr").allInnerTexts();
  log(`bars: ${report.bars.join(", ")}`);

  // The "Compute clusters" button opens the operator's form, filled in
  await panel.getByRole("button", { name: "Compute clusters" }).click();
  const dialog = page.getByRole("dialog");
  await dialog.getByText("Embeddings field", { exact: true }).waitFor();
  report.prompt = {
    embeddings_field: await dialog
      .locator(
        'xpath=.//p[normalize-space()="The vector field to cluster"]' +
          "/following::input[1]"
      )
      .inputValue(),
  };
  await dialog.getByRole("button", { name: "Cancel" }).click();
  await dialog.waitFor({ state: "hidden" });

  // Click a bar of the size chart
  const barId = report.bars[config.bar];
  await bars.nth(config.bar).click({ force: true });
  const afterBar = await waitForCount(page, config.sizes[barId]);
  report.steps.push({ action: "bar", cluster: barId, count: afterBar });
  log(`bar ${barId}: ${afterBar}`);
  await page.waitForTimeout(1500);
  await page.screenshot({ path: path.join(config.outDir, "explorer_bar.png") });

  // Click a row of the cluster table
  const row = panel.locator("table tbody tr").nth(config.row);
  const rowId = (await row.locator("td").first().innerText()).trim();
  await row.locator("td").first().click();
  const afterRow = await waitForCount(page, config.sizes[rowId]);
  report.steps.push({ action: "row", cluster: rowId, count: afterRow });
  log(`row ${rowId}: ${afterRow}`);

  // Rename the selected cluster
  await panel.getByText(`Cluster ${rowId}`, { exact: true }).waitFor();
  const input = panel.locator(
    'xpath=//p[normalize-space()="A name for this cluster"]/following::input[1]'
  );
  await input.fill(config.label);
  await page.waitForTimeout(800);
  await panel.getByRole("button", { name: "Rename cluster" }).click();
  await panel
    .locator("table tbody tr", { hasText: config.label })
    .first()
    .waitFor({ timeout: TIMEOUT })
    .catch((e) => log(`label not shown: ${e.message.split("\n")[0]}`));
  report.rows_after_rename = await panel
    .locator("table tbody tr")
    .allInnerTexts();
  report.steps.push({
    action: "rename",
    cluster: rowId,
    count: await countText(page),
  });
  await page.waitForTimeout(1000);
  await panel.locator("table").first().scrollIntoViewIfNeeded();
  await page.screenshot({
    path: path.join(config.outDir, "explorer_renamed.png"),
  });

  // Back to every sample
  await panel.getByRole("button", { name: "Show all samples" }).click();
  const afterAll = await waitForCount(page, config.total);
  report.steps.push({ action: "show_all", count: afterAll });
  log(`show all: ${afterAll}`);
}

const browser = await chromium.launch({
  executablePath: config.chromium,
  args: [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
});
let failed = false;
try {
  const page = await browser.newPage({
    viewport: { width: 1600, height: 1000 },
  });
  page.setDefaultTimeout(TIMEOUT);
  page.on("pageerror", (e) => log(`page error: ${e.message}`));
  const panel = page.locator('[data-cy="panel-content-cluster_explorer"]');
  try {
    await main(page, panel);
  } catch (e) {
    failed = true;
    report.error = e.message;
    await page
      .screenshot({ path: path.join(config.outDir, "explorer_error.png") })
      .catch(() => {});
  }
} finally {
  await browser.close();
}
process.stdout.write(JSON.stringify(report) + "\n");
process.exit(failed ? 1 : 0);
