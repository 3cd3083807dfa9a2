// Takes screenshots of Home Assistant pages in headless Chromium and checks their text.
//
// Usage: node screenshot.cjs SPEC.json
// SPEC: {"baseUrl", "tokens": {access_token, refresh_token, expires_in, client_id},
//        "userDataDir", "textDir",
//        "shots": [{"path", "file", "expect": [text...], "expectMin": {text: n},
//                   "expectMax": {text: n}, "height", "click", "timeoutMs"}]}
// `click` is a text to click once the page is loaded, such as "Notifications".
// Every text in `expect` must appear in the page, shadow DOM included, and each text in
// expectMin/expectMax must appear at least/at most n times, or the shot fails: a blank
// page or a login page can never pass. The page text is saved in textDir for reading.
// Exits 1 when any shot fails.
// Needs playwright-core in $E2E_NODE_MODULES and Debian's chromium in /usr/bin/chromium.
"use strict";

const fs = require("fs");
const path = require("path");

const { chromium } = require(path.join(process.env.E2E_NODE_MODULES, "playwright-core"));

// Chromium must not try to reach any outside service: these flags stop its background
// networking, and it runs inside the test's network namespace anyway.
const CHROMIUM_FLAGS = [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
];

// The text of the page including every open shadow root, because Home Assistant's
// frontend is made of web components.
function deepText() {
  const parts = [];
  const walk = (node) => {
    if (node.nodeType === Node.TEXT_NODE) {
      parts.push(node.textContent);
      return;
    }
    if (node.nodeType !== Node.ELEMENT_NODE && node.nodeType !== Node.DOCUMENT_FRAGMENT_NODE) {
      return;
    }
    if (node.shadowRoot) walk(node.shadowRoot);
    const slot = node.tagName === "SLOT" ? node.assignedNodes() : [];
    for (const child of slot.length ? slot : node.childNodes) walk(child);
  };
  walk(document.body);
  return parts.join(" ").replace(/\s+/g, " ");
}

function countOf(text, needle) {
  return text.split(needle).length - 1;
}

async function main() {
  const spec = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
  const context = await chromium.launchPersistentContext(spec.userDataDir, {
    executablePath: "/usr/bin/chromium",
    headless: true,
    args: CHROMIUM_FLAGS,
    viewport: { width: 1280, height: 1000 },
    deviceScaleFactor: 1,
  });
  const tokens = {
    access_token: spec.tokens.access_token,
    refresh_token: spec.tokens.refresh_token,
    token_type: "Bearer",
    expires_in: spec.tokens.expires_in,
    expires: Date.now() + spec.tokens.expires_in * 1000,
    hassUrl: spec.baseUrl,
    clientId: spec.tokens.client_id,
  };
  // The frontend reads its OAuth tokens from localStorage["hassTokens"]; with them in
  // place it opens the page as the logged-in owner instead of the login form.
  await context.addInitScript((value) => {
    window.localStorage.setItem("hassTokens", value);
  }, JSON.stringify(tokens));

  const page = context.pages()[0] || (await context.newPage());
  let failed = 0;
  for (const shot of spec.shots) {
    const timeout = shot.timeoutMs || 30000;
    // Home Assistant scrolls inside its own panel, not the document, so a long page
    // needs a tall window rather than a full-page screenshot.
    await page.setViewportSize({ width: 1280, height: shot.height || 1000 });
    await page.goto(spec.baseUrl + shot.path, { waitUntil: "load" });
    if (shot.click) {
      await page.getByText(shot.click, { exact: true }).first().click({ timeout });
    }
    const deadline = Date.now() + timeout;
    let text = "";
    let missing = [];
    for (;;) {
      text = await page.evaluate(deepText);
      missing = (shot.expect || []).filter((t) => !text.includes(t));
      for (const [needle, count] of Object.entries(shot.expectMin || {})) {
        const found = countOf(text, needle);
        if (found < count) missing.push(`at least ${count} x "${needle}" (found ${found})`);
      }
      for (const [needle, count] of Object.entries(shot.expectMax || {})) {
        const found = countOf(text, needle);
        if (found > count) missing.push(`at most ${count} x "${needle}" (found ${found})`);
      }
      if (!missing.length || Date.now() > deadline) break;
      await page.waitForTimeout(500);
    }
    // Let the last state changes and animations settle before the picture.
    await page.waitForTimeout(1500);
    await page.screenshot({ path: shot.file });
    fs.writeFileSync(path.join(spec.textDir, path.basename(shot.file, ".png") + ".txt"),
                     text + "\n");
    if (missing.length) {
      failed += 1;
      console.log(`FAIL ${shot.file}: missing ${missing.join(", ")}`);
    } else {
      console.log(`ok   ${shot.file}`);
    }
  }
  await context.close();
  process.exit(failed ? 1 : 0);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
