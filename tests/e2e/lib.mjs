// What the browser drivers share: the config from the command line,
// logging, screenshots, steps that record what they saw in a report, the
// grid's sample count, the panel's tables and form inputs, and `run`,
// which starts Chromium, runs a driver's `main` and prints its report as
// JSON on the last line of stdout (the Python tests read it there).
//
// Every driver is run as: node <driver>.mjs '<json config>', the config
// holding at least {url, playwrightDir, chromium, outDir}.

import fs from "fs";
import { createRequire } from "module";
import path from "path";

export const config = JSON.parse(process.argv[2]);

export const TIMEOUT = 30000;
const WAIT = 20000; // for what the App shows after a click
const REPORT = path.join(config.outDir, "report.json");
const PANEL = '[data-cy="panel-content-cluster_explorer"]';

export function log(message) {
  process.stderr.write(`[e2e] ${message}\n`);
}

export function clean(text) {
  return (text || "").replace(/[\s\u200b]+/g, " ").trim();
}

// A screenshot of the page (or of an element's locator) in the output
// folder
export async function shot(target, name) {
  await target.screenshot({ path: path.join(config.outDir, name) });
}

// Writes what was seen so far, should the run be stopped
export function saveReport(report, file = REPORT) {
  fs.writeFileSync(file, JSON.stringify(report));
}

// A function that runs one step and records what it returns in
// `report.steps` under the step's name. An error is recorded in
// `report.errors` instead (with a screenshot named `failedPrefix` + name,
// and the Escape key for any open dialog) and the run goes on. Past
// `deadline` (a time in ms) a step is skipped. The report is written to
// `file` after every step.
export function stepper(
  report,
  { failedPrefix, deadline = Infinity, file = REPORT }
) {
  return async function step(page, name, fn) {
    if (Date.now() > deadline) {
      report.errors[name] = "skipped: the run took too long";
      return;
    }
    try {
      report.steps[name] = await fn();
      log(`${name}: ${JSON.stringify(report.steps[name])}`);
    } catch (e) {
      report.errors[name] = e.message.split("\n")[0];
      log(`${name} FAILED: ${e.message}`);
      await shot(page, `${failedPrefix}${name}.png`).catch(() => {});
      await page.keyboard.press("Escape").catch(() => {});
    }
    saveReport(report, file);
  };
}

// Opens the App at the config's url, past a promotional popup
export async function openApp(page) {
  await page.goto(config.url);
  await page
    .getByText("Dismiss", { exact: true })
    .click({ timeout: 8000 })
    .catch(() => {});
}

// Opens the cluster explorer from the "+" menu
export async function openExplorer(page) {
  await page.locator('[data-cy="new-panel-btn"]').first().click();
  await page.locator('[data-cy="new-panel-option-cluster_explorer"]').click();
}

// The grid's sample count
export async function gridCount(page) {
  const text = await page.locator('[data-cy="entry-counts"]').innerText();
  const m = text.replace(/,/g, "").match(/\d+/);
  return m ? parseInt(m[0], 10) : null;
}

// Waits until the grid's sample count reads `n` (or the time is up), then
// `pause` ms more; returns the count shown
export async function waitForCount(page, n, timeout = WAIT, pause = 0) {
  await page
    .waitForFunction(
      (n) => {
        const el = document.querySelector('[data-cy="entry-counts"]');
        const m = el && el.innerText.replace(/,/g, "").match(/\d+/);
        return m !== null && m !== undefined && parseInt(m[0], 10) === n;
      },
      n,
      { timeout }
    )
    .catch(() => log(`the grid count never became ${n}`));
  if (pause) await page.waitForTimeout(pause);
  return gridCount(page);
}

// Scrolls a locator's element into view. The panel renders again when its
// state changes, which can replace the element while Playwright scrolls
// ("not attached to the DOM"): the locator then finds the new element and
// this tries again.
export async function scrollTo(locator, tries = 5) {
  for (let i = 1; ; i++) {
    try {
      return await locator.scrollIntoViewIfNeeded();
    } catch (e) {
      if (i >= tries || !/not attached/.test(e.message)) throw e;
      await locator.page().waitForTimeout(300);
    }
  }
}

// The input that follows a form field's description text
export function inputAfter(scope, description) {
  return scope
    .locator(
      `xpath=.//p[starts-with(normalize-space(), ${JSON.stringify(
        description
      )})]/following::input[1]`
    )
    .first();
}

// Types `value` into a form's input as a user would, then leaves it
export async function typeInto(page, input, value) {
  await input.click();
  await input.fill("");
  await input.type(String(value), { delay: 20 });
  await input.press("Tab");
  await page.waitForTimeout(1500); // the form resolves again
}

// The cells of table rows (`tr` elements), as text
export async function cells(rows) {
  return rows.evaluateAll((trs) =>
    trs.map((tr) =>
      Array.from(tr.querySelectorAll("td")).map((td) =>
        td.innerText.replace(/\s+/g, " ").trim()
      )
    )
  );
}

// The header texts of the tables in `scope`
export async function headerTexts(scope) {
  return scope
    .locator("thead th")
    .evaluateAll((ths) => ths.map((th) => th.innerText.trim()));
}

// The table that follows the text `label` in the panel
export function tableAfter(panel, label) {
  return panel
    .locator(
      `xpath=.//*[starts-with(normalize-space(), ${JSON.stringify(
        label
      )})]/following::table[1]`
    )
    .first();
}

// A table's headers and rows of cells
export async function tableContent(table) {
  const headers = await headerTexts(table);
  const rows = await cells(table.locator("tbody tr"));
  return { headers, rows };
}

// Starts Chromium, opens a page and runs `main(page, panel)` (the panel:
// the cluster explorer's content); an error that escapes `main` ends the
// run as the report's `error` (with `<name>_error.png`). Records page
// errors in `report.page_errors` if `pageErrors`, and the messages of
// JavaScript dialogs in `report.dialogs` (dismissing them) if `dialogs`.
// Prints the report as the last line of stdout and exits, 1 on an error.
export async function run(main, options) {
  const { report, name, pageErrors = false, dialogs = false } = options;
  const viewport = options.viewport || { width: 1600, height: 1000 };
  const require = createRequire(path.join(config.playwrightDir, "noop.js"));
  const { chromium } = require("playwright-core");
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
    const page = await browser.newPage({ viewport });
    page.setDefaultTimeout(TIMEOUT);
    page.on("pageerror", (e) => {
      log(`page error: ${e.message}`);
      if (pageErrors) {
        (report.page_errors = report.page_errors || []).push(e.message);
      }
    });
    if (dialogs) {
      report.dialogs = report.dialogs || [];
      page.on("dialog", (d) => {
        report.dialogs.push(d.message());
        d.dismiss().catch(() => {});
      });
    }
    try {
      await main(page, page.locator(PANEL));
    } catch (e) {
      failed = true;
      report.error = e.message.split("\n")[0];
      log(`FAILED: ${e.message}`);
      await shot(page, `${name}_error.png`).catch(() => {});
    }
  } finally {
    await browser.close();
  }
  process.stdout.write(JSON.stringify(report) + "\n");
  process.exit(failed ? 1 : 0);
}
