// Drives the FiftyOne App in headless Chromium through the cluster explorer
// and reports what the App showed after each step as JSON on the last line
// of stdout; the Python test (test_browser.py) makes the assertions.
// Screenshots go into the output folder.
//
// Steps: open the panel from the "+" menu (on an HDBSCAN run with noise);
// open the compute_clusters form; click every row and a bar (the grid must
// show that cluster, the selected cluster's actions right below its row);
// type into the actions, select another cluster (the inputs must clear);
// merge two clusters (asked first; the choice shows labels and sizes; then
// rows and bars must agree); switch to a k-means run and back (no row or
// bar of the other run); rename a cluster to an HTML payload and another
// to a Markdown one (text, not markup); compute a new run from the panel (no phantom row); reload the
// page; go back to every sample. A step that fails records its error and
// the next steps still run, so one run reports every regression.
//
// Usage: node explorer.mjs '<json config>'
//   config: {url, playwrightDir, chromium, outDir, total, rename,
//            renameMarkdown, newRun: {run_key, method, n_clusters},
//            otherRun, runs, expected: {run: rows after the merge}}

import {
  cells,
  clean,
  config,
  openApp,
  openExplorer,
  run,
  scrollTo,
  shot,
  stepper,
  TIMEOUT,
  waitForCount,
} from "./lib.mjs";

const WAIT = 15000; // for what the App shows after a click (about 1 s)
const SELECTED_BAR = "rgb(44, 123, 229)"; // the panel's colour of a selection
const report = { steps: {}, errors: {}, dialogs: [] };
const step = stepper(report, {
  failedPrefix: "failed_",
  deadline: Date.now() + 420000, // later steps are skipped
});

// What the panel shows: table rows (cells), bars (x labels, heights in
// order, selected ones), the run chosen and the selected cluster's title
async function shown(panel) {
  const rows = await cells(panel.locator("table tbody tr"));
  const bars = await panel
    .locator(".js-plotly-plot .bars .point path")
    .evaluateAll((paths) =>
      paths.map((p) => getComputedStyle(p).fill || p.style.fill)
    );
  const x = await panel
    .locator(".js-plotly-plot .xtick text")
    .evaluateAll((els) => els.map((e) => e.textContent.trim()));
  const run = clean(
    await panel
      .locator(
        'xpath=.//*[normalize-space()="Clustering run"]' +
          '/following::*[@role="combobox"][1]'
      )
      .innerText()
      .catch(() => "")
  );
  return {
    run,
    rows,
    ids: rows.map((r) => r[0]),
    bars: bars.length,
    x,
    selected_bars: x.filter((_, i) => bars[i] === SELECTED_BAR),
  };
}

// Waits until what the panel shows satisfies `ok` (or the time is up)
async function settle(page, panel, ok, timeout = 15000) {
  const end = Date.now() + timeout;
  let last = await shown(panel);
  while (!ok(last) && Date.now() < end) {
    await page.waitForTimeout(300);
    last = await shown(panel);
  }
  await page.waitForTimeout(800); // and stays so (late patches)
  return shown(panel);
}

function rowId(id) {
  return id === "-1" ? "-1 (noise)" : id;
}

function rowOf(panel, id) {
  return panel.locator("table tbody tr").filter({
    has: panel.page().locator("td:first-child", {
      hasText: new RegExp(`^\\s*${rowId(id).replace(/[()]/g, "\\$&")}\\s*$`),
    }),
  });
}

function titleOf(panel, id) {
  const text = id === "-1" ? "Noise (cluster -1)" : `Cluster ${id}`;
  return panel.getByText(text, { exact: true }).first();
}

function inputAfter(panel, description) {
  return panel.locator(
    `xpath=.//p[normalize-space()="${description}"]/following::input[1]`
  );
}
const LABEL = "A name for this cluster";
const TAG = "Adds this tag to every sample of the cluster";
const MERGE = "Moves every sample of this cluster into the chosen one";

// Opens the dropdown after `labelText` and returns its options' texts;
// picks the one matching `pick` (a RegExp), or closes it
async function dropdown(page, panel, labelText, pick) {
  await panel
    .locator(
      `xpath=.//*[normalize-space()="${labelText}"]` +
        '/following::*[@role="combobox"][1]'
    )
    .click();
  const options = page.getByRole("option");
  await options.first().waitFor();
  const texts = (await options.allInnerTexts()).map(clean);
  if (pick) {
    await options.filter({ hasText: pick }).first().click();
  } else {
    await page.keyboard.press("Escape");
  }
  return texts;
}

// Clicks the row of cluster `id`; returns the grid's count, the row's
// size cell, and how far below the row the cluster's actions start
async function clickRow(page, panel, id, size) {
  const row = rowOf(panel, id);
  const sizeCell = clean(await row.locator("td").nth(2).innerText());
  await row.locator("td").first().click();
  const want = size ?? parseInt(sizeCell, 10);
  const count = await waitForCount(page, want, WAIT);
  const title = titleOf(panel, id);
  await title.waitFor({ timeout: WAIT });
  // Where the actions start below the row, once both are laid out (the
  // same twice in a row)
  let gap = null;
  let last = null;
  for (let i = 0; i < 30; i++) {
    await page.waitForTimeout(250);
    const rowBox = await rowOf(panel, id)
      .boundingBox({ timeout: 2000 })
      .catch(() => null);
    const titleBox = await title
      .boundingBox({ timeout: 2000 })
      .catch(() => null);
    const now =
      rowBox && titleBox
        ? Math.round(titleBox.y - (rowBox.y + rowBox.height))
        : null;
    if (now !== null && now === last) {
      gap = now;
      break;
    }
    last = now;
  }
  gap = gap ?? last;
  return {
    cluster: id,
    size_cell: parseInt(sizeCell, 10),
    count,
    actions_gap: gap,
  };
}

async function main(page, panel) {
  await openApp(page);
  report.start = await waitForCount(page, config.total, TIMEOUT);

  await openExplorer(page);
  await panel.locator("table tbody tr").first().waitFor({ timeout: TIMEOUT });
  await step(page, "open", () => settle(page, panel, (s) => s.bars > 0));
  const first = report.steps.open;

  // The "Compute clusters" button opens the operator's form, filled in
  await step(page, "prompt", async () => {
    await panel.getByRole("button", { name: "Compute clusters" }).click();
    const dialog = page.getByRole("dialog");
    await dialog.getByText("Embeddings field", { exact: true }).waitFor();
    const field = await dialog
      .locator(
        'xpath=.//p[normalize-space()="The vector field to cluster"]' +
          "/following::input[1]"
      )
      .inputValue();
    await dialog.getByRole("button", { name: "Cancel" }).click();
    await dialog.waitFor({ state: "hidden" });
    return { embeddings_field: field };
  });

  // Every row shows its cluster in the grid, its actions right below it
  await step(page, "rows", async () => {
    const out = [];
    for (const id of first.ids) {
      const cid = id === "-1 (noise)" ? "-1" : id;
      out.push(await clickRow(page, panel, cid));
    }
    return out;
  });
  await shot(page, "explorer_selected.png");

  // A bar too
  await step(page, "bar", async () => {
    const id = first.x[1];
    await panel
      .locator(".js-plotly-plot .bars .point path")
      .nth(1)
      .click({ force: true });
    const size = parseInt(first.rows[1][2], 10);
    const count = await waitForCount(page, size, WAIT);
    await titleOf(panel, id).waitFor();
    await page.waitForTimeout(1000);
    await shot(page, "explorer_bar.png");
    return { cluster: id, size, count };
  });

  await step(page, "inputs", () => inputsClear(page, panel, first));
  await step(page, "merge", () => merge(page, panel, first));
  await step(page, "switch", () => switchRuns(page, panel));
  await step(page, "rename", () =>
    rename(page, panel, config.rename, 1, "explorer_renamed.png")
  );
  await step(page, "rename_markdown", () =>
    rename(page, panel, config.renameMarkdown, 2, "explorer_renamed_md.png")
  );
  await step(page, "new_run", () => newRun(page, panel));
  await step(page, "reload", async () => {
    const before = await shown(panel);
    await page.reload();
    await panel.locator("table tbody tr").first().waitFor();
    const after = await settle(page, panel, (s) => s.bars > 0);
    return { before, after };
  });
  await step(page, "show_all", async () => {
    await rowOf(panel, "0").locator("td").first().click();
    await titleOf(panel, "0").waitFor();
    await panel.getByRole("button", { name: "Show all samples" }).click();
    return { count: await waitForCount(page, config.total, WAIT) };
  });
}

// Types into every input of one cluster, then selects another: the new
// selection's inputs must be empty (its label input: its label)
async function inputsClear(page, panel, first) {
  const [a, b] = [first.ids[0], first.ids[1]];
  await clickRow(page, panel, a);
  await inputAfter(panel, LABEL).fill("draft name");
  await inputAfter(panel, TAG).fill("draft-tag");
  await dropdown(page, panel, MERGE, /^cluster/);
  await page.waitForTimeout(800);
  const typed = {
    label: await inputAfter(panel, LABEL).inputValue(),
    tag: await inputAfter(panel, TAG).inputValue(),
  };
  await clickRow(page, panel, b);
  await page.waitForTimeout(1000);
  const combo = panel.locator(
    `xpath=.//*[normalize-space()="${MERGE}"]/following::*[@role="combobox"][1]`
  );
  return {
    typed,
    after: {
      cluster: b,
      label: await inputAfter(panel, LABEL).inputValue(),
      tag: await inputAfter(panel, TAG).inputValue(),
      merge: clean(await combo.innerText()),
    },
  };
}

// Merges the second smallest cluster into the largest: asked first, then
// the rows, bars and selection of the merged run
async function merge(page, panel, first) {
  const ids = first.ids.filter((id) => id !== "-1 (noise)");
  const [source, into] = [ids[ids.length - 2], ids[0]];
  await clickRow(page, panel, source);
  const options = await dropdown(
    page,
    panel,
    MERGE,
    new RegExp(`^cluster ${into}\\b`)
  );
  const before = await shown(panel);
  await panel.getByRole("button", { name: /^Merge/ }).first().click();
  const question = panel.getByText(/cannot be undone/).first();
  const asked = await question
    .waitFor({ timeout: 5000 })
    .then(() => true)
    .catch(() => false);
  let questionText = null;
  let whileAsked = null;
  if (asked) {
    questionText = clean(await question.innerText());
    await scrollTo(question);
    await page.waitForTimeout(500);
    whileAsked = await shown(panel);
    await shot(page, "explorer_merge_question.png");
    await panel
      .getByRole("button", { name: new RegExp(`^Merge cluster ${source}`) })
      .click();
  }
  const after = await settle(
    page,
    panel,
    (s) => !s.ids.includes(source) && s.bars === s.rows.length
  );
  const size = parseInt(
    after.rows.find((r) => r[0] === into)?.[2] ?? "-1",
    10
  );
  const count = await waitForCount(page, size, WAIT);
  await shot(page, "explorer_merged.png");
  return {
    source,
    into,
    options,
    asked,
    question: questionText,
    rows_while_asked: whileAsked && whileAsked.rows.length,
    rows_before: before.rows.length,
    after,
    size,
    count,
  };
}

// Switches to the k-means run and back to the HDBSCAN run
async function switchRuns(page, panel) {
  const out = {};
  for (const run of [config.otherRun, config.runs[0]]) {
    await dropdown(page, panel, "Clustering run", new RegExp(`^${run}$`));
    const want = config.expected[run];
    out[run] = await settle(
      page,
      panel,
      (s) => s.rows.length === want && s.bars === want
    );
    out[run].count = await waitForCount(page, config.total, WAIT);
    if (run === config.otherRun) {
      await page.waitForTimeout(1500); // the grid's thumbnails
      await shot(page, "explorer_switched.png");
    }
  }
  return out;
}

// Renames the `fromEnd`-th smallest cluster to `label` (markup): it must
// show as text in the table, the title and the bar's hover
async function rename(page, panel, label, fromEnd, shotName) {
  const now = await shown(panel);
  const ids = now.ids.filter((i) => i !== "-1 (noise)");
  const id = ids[ids.length - fromEnd];
  await clickRow(page, panel, id);
  await inputAfter(panel, LABEL).fill(label);
  await page.waitForTimeout(800);
  await panel.getByRole("button", { name: /^Rename/ }).click();
  const after = await settle(page, panel, (s) =>
    s.rows.some((r) => r[1] === label)
  );
  await page.waitForTimeout(1000);
  const title = clean(
    await panel
      .locator("p", { hasText: new RegExp(`^\\s*Cluster ${id}\\b`) })
      .first()
      .innerText()
      .catch(() => "")
  );
  // The bar's hover text
  const index = after.x.indexOf(id);
  let hover = null;
  if (index >= 0) {
    await panel
      .locator(".js-plotly-plot .bars .point path")
      .nth(index)
      .hover({ force: true });
    const text = page.locator(".hoverlayer .hovertext text").first();
    hover = await text
      .waitFor({ timeout: 5000 })
      .then(() => text.textContent())
      .catch(() => null);
  }
  await shot(page, shotName);
  return {
    cluster: id,
    label,
    row: after.rows.find((r) => r[0] === id),
    title,
    hover,
    // what markup in a label could have made
    img_elements: await page.locator('img[src="x"]').count(),
    link_elements: await page
      .locator('a[href="https://example.com/"], a[href="https://example.com"]')
      .count(),
    bold_elements: await panel.locator("strong", { hasText: /^bold$/ }).count(),
  };
}

// Computes a new k-means run from the panel's form
async function newRun(page, panel) {
  const { run_key, method, n_clusters } = config.newRun;
  await panel.getByRole("button", { name: "Compute clusters" }).click();
  const dialog = page.getByRole("dialog");
  await dialog.getByText("Run key", { exact: true }).waitFor();
  // The whole dataset, not the cluster the grid shows (if the form asks)
  await dialog
    .getByText("Entire dataset", { exact: true })
    .click({ timeout: 3000 })
    .catch(() => {});
  await dialog
    .locator('xpath=.//*[normalize-space()="Run key"]/following::input[1]')
    .fill(run_key);
  await dialog
    .locator(
      'xpath=.//*[normalize-space()="Method"]/following::*[@role="combobox"][1]'
    )
    .click();
  await page
    .getByRole("option")
    .filter({ hasText: new RegExp(`^${method}`) })
    .first()
    .click();
  const k = dialog.locator(
    'xpath=.//*[normalize-space()="N clusters"]/following::input[1]'
  );
  await k.waitFor();
  await k.fill(String(n_clusters));
  await page.waitForTimeout(1000);
  await dialog.getByRole("button", { name: "Execute" }).click();
  // The form shows the operator's result until the user closes it
  const result = page.getByText("Fields written", { exact: false }).first();
  await result.waitFor({ timeout: 120000 });
  await page.waitForTimeout(1000);
  await shot(page, "explorer_new_run_result.png");
  const shown = page.getByRole("dialog").filter({ has: result });
  await shown.getByRole("button", { name: "Done" }).click();
  await shown.waitFor({ state: "hidden", timeout: 10000 });
  const after = await settle(
    page,
    panel,
    (s) => s.run === run_key && s.rows.length === n_clusters,
    60000
  );
  await shot(page, "explorer_new_run.png");
  const clicks = [];
  for (const id of after.ids) {
    const cid = id === "-1 (noise)" ? "-1" : id;
    const click = await clickRow(page, panel, cid).catch((e) => ({
      cluster: cid,
      error: e.message.split("\n")[0],
    }));
    clicks.push(click);
    if (click.error) break;
  }
  return { after, clicks };
}

await run(main, { report, name: "explorer", dialogs: true });
