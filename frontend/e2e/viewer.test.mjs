// The CAD viewer with build123d's real output: parts (not faces) as layers, the part
// tree, section planes, measurement, explode and fit, at 1400 and 800 px wide.

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import { modelAtBorder, pixelDifference, settledPixels, shots, signIn, launch } from "./harness.mjs";

let app;
before(async () => {
  app = await launch();
});
after(async () => {
  await app?.stop();
});

/** Adds a shipped example from the script list and runs it to success. */
async function runExample(page, title) {
  await page.getByText("Add an example…").click();
  await page.getByRole("list", { name: "Examples" }).getByRole("button", { name: title }).click();
  await page.getByTestId("version").waitFor();
  await page.getByRole("button", { name: "Run & Stream" }).click();
  await page.getByTestId("run-status").filter({ hasText: "Success" }).waitFor({ timeout: 200_000 });
  await page.locator("[data-testid=viewer-canvas] canvas").waitFor();
  await page.getByRole("tree", { name: "Parts" }).getByRole("treeitem").first().waitFor();
  await page.locator(".viewer3d").scrollIntoViewIfNeeded();
  // Let the model load and a few frames render.
  await page.waitForTimeout(1000);
}

const parts = (page) => page.getByRole("tree", { name: "Parts" }).locator("[role=treeitem][data-part]");

test("the bracket is one part, with its size and volume; a section plane changes the picture", { timeout: 300_000 }, async () => {
  const { context, page } = await signIn(app, "ed1", "1editor");
  await runExample(page, /Bracket with a hole/);
  // One part named after the file, not nine faces (mesh_0 … mesh_0_8).
  const names = (await parts(page).allTextContents()).map((t) => t.replace("Isolate", "").trim());
  assert.deepEqual(names, ["result"], names.join(" | "));
  const printed = await page.getByTestId("run-log").textContent();
  const volume = Number(/volume ([\d.]+) mm3/.exec(printed)[1]);

  // Selecting the part shows its bounding box and the volume its mesh encloses.
  await parts(page).first().getByRole("button", { name: "result" }).click();
  const info = await page.getByTestId("part-info").textContent();
  assert.match(info, /60\.00 × 30\.00 × 30\.00 mm/, info);
  const shown = Number(/≈ ([\d,.]+) mm³/.exec(info)[1].replace(/,/g, ""));
  assert.ok(Math.abs(shown - volume) / volume < 0.01, `mesh volume ${shown} vs build123d's ${volume}`);
  await page.locator(".viewer3d").screenshot({ path: path.join(shots, "viewer-bracket.png") });

  // A section plane through the middle of X changes the picture; turning it off restores it.
  await page.getByLabel("Grid").uncheck();
  await page.getByLabel("Axes").uncheck();
  const whole = await settledPixels(page);
  await page.getByLabel("Section plane").selectOption("x");
  const cut = await settledPixels(page);
  await page.locator(".viewer3d").screenshot({ path: path.join(shots, "viewer-bracket-section.png") });
  const changed = pixelDifference(whole, cut);
  assert.ok(changed > 0.02, `a section plane changed only ${(changed * 100).toFixed(2)} % of the picture`);
  // Moving the plane moves the cut.
  await page.getByLabel("Section position").fill("20");
  const moved = await settledPixels(page);
  assert.ok(pixelDifference(cut, moved) > 0.01, "moving the section plane changed nothing");
  // The caps fill the cut: a cut along the bracket's length, turned to face the camera,
  // shows a filled L-shaped face with them and the inside of the solid without.
  await page.getByLabel("Section plane").selectOption("y");
  await page.getByLabel("Section position").fill("50");
  await page.getByLabel("Flip").check();
  const capped = await settledPixels(page);
  await page.locator(".viewer3d").screenshot({ path: path.join(shots, "viewer-bracket-caps.png") });
  await page.getByLabel("Caps").uncheck();
  const open = await settledPixels(page);
  await page.locator(".viewer3d").screenshot({ path: path.join(shots, "viewer-bracket-nocaps.png") });
  assert.ok(pixelDifference(capped, open) > 0.01, "section caps change nothing");
  await page.getByLabel("Caps").check();
  await page.getByLabel("Flip").uncheck();
  await page.getByLabel("Section plane").selectOption("off");
  const again = await settledPixels(page);
  assert.ok(pixelDifference(whole, again) < 0.002, "the picture without a section differs from the first");

  // Measuring: two points picked on the model give a distance.
  await page.getByLabel(/Measure distance/).check();
  const box = await page.locator("[data-testid=viewer-canvas]").boundingBox();
  let picked = 0;
  for (let fy = 0.3; fy <= 0.8 && picked < 2; fy += 0.1)
    for (let fx = 0.2; fx <= 0.8 && picked < 2; fx += 0.1) {
      await page.mouse.click(box.x + box.width * fx, box.y + box.height * fy);
      const text = await page.getByTestId("measure-result").textContent();
      picked = /distance/.test(text) ? 2 : /second/.test(text) ? 1 : 0;
    }
  const measured = await page.getByTestId("measure-result").textContent();
  const m = /distance ([\d,.]+) mm/.exec(measured);
  assert.ok(m, measured);
  const d = Number(m[1].replace(/,/g, ""));
  assert.ok(d > 0 && d < Math.hypot(60, 30, 30) + 0.01, `distance ${d} is not within the bracket`);
  await page.locator(".viewer3d").screenshot({ path: path.join(shots, "viewer-bracket-measure.png") });
  await context.close();
});

test("an assembly is a tree of parts: isolate, colours, explode and fit within an 800 px window", { timeout: 300_000 }, async () => {
  const { context, page } = await signIn(app, "ed1", "1editor", { viewport: { width: 800, height: 720 } });
  await runExample(page, /Two-part assembly/);
  const tree = page.getByRole("tree", { name: "Parts" });
  const all = (await tree.getByRole("treeitem").allTextContents()).map((t) => t.replace(/Isolate/g, "").trim());
  assert.match(all[0], /^assembly/, all.join(" | "));
  const names = (await parts(page).allTextContents()).map((t) => t.replace("Isolate", "").trim());
  assert.deepEqual(names, ["plate", "pin"]);
  // The exporter's colours (steelblue, orange) are the parts' colours.
  assert.equal(await page.getByLabel("Colour of plate").inputValue(), "#4682b4");
  assert.equal(await page.getByLabel("Colour of pin").inputValue(), "#ffa500");

  // The canvas is inside the 800 px window and the fitted model does not touch its edges.
  await page.getByLabel("Grid").uncheck();
  await page.getByLabel("Axes").uncheck();
  const canvasBox = await page.locator("[data-testid=viewer-canvas]").boundingBox();
  assert.ok(canvasBox.x >= 0 && canvasBox.x + canvasBox.width <= 800, JSON.stringify(canvasBox));
  const scrollWidth = await page.evaluate(() => document.documentElement.scrollWidth);
  assert.ok(scrollWidth <= 800, `the page scrolls sideways: ${scrollWidth} px`);
  await page.waitForTimeout(300);
  assert.equal(modelAtBorder(await settledPixels(page)), 0, "the fitted model is cut off at the canvas's edge");
  // Exploded, the parts move apart and the view refits so both stay whole.
  const before = await settledPixels(page);
  await page.getByLabel("Exploded view").fill("100");
  const exploded = await settledPixels(page);
  assert.ok(pixelDifference(before, exploded) > 0.01, "exploding changed nothing");
  assert.equal(modelAtBorder(exploded), 0, "the exploded model is cut off at the canvas's edge");
  await page.screenshot({ path: path.join(shots, "viewer-assembly-800.png"), fullPage: true });

  // Isolate the pin: the plate is hidden; Show all brings it back.
  await page.getByTitle("Show only pin").click();
  assert.equal(await page.getByLabel("Show plate").isChecked(), false);
  assert.equal(await page.getByLabel("Show pin").isChecked(), true);
  const isolated = await settledPixels(page);
  await page.locator(".viewer3d").screenshot({ path: path.join(shots, "viewer-assembly-isolated.png") });
  assert.ok(pixelDifference(exploded, isolated) > 0.005, "hiding the plate changed nothing");
  await page.getByRole("button", { name: "Show all" }).click();
  assert.equal(await page.getByLabel("Show plate").isChecked(), true);

  // Orthographic view draws differently from perspective.
  await page.getByLabel("Orthographic").check();
  await page.getByRole("button", { name: "Fit to view" }).click();
  const orthoPx = await settledPixels(page);
  assert.ok(pixelDifference(exploded, orthoPx) > 0.005, "orthographic looks like perspective");
  assert.equal(modelAtBorder(orthoPx), 0, "the orthographic fit cuts the model off");
  await page.locator(".viewer3d").screenshot({ path: path.join(shots, "viewer-assembly-ortho.png") });
  await context.close();
});
