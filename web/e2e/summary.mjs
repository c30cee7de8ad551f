// A node:test reporter that prints one closing line after the run:
//   e2e: 4 passed, 0 failed, 0 skipped
// (the spec reporter beside it prints the details).

export default async function* summary(source) {
  let passed = 0;
  let failed = 0;
  let skipped = 0;
  for await (const event of source) {
    if (event.type !== 'test:pass' && event.type !== 'test:fail') continue;
    if (event.data.details.type === 'suite') continue;
    if (event.type === 'test:fail') failed += 1;
    else if (event.data.skip !== undefined || event.data.todo !== undefined) skipped += 1;
    else passed += 1;
  }
  yield `\ne2e: ${passed} passed, ${failed} failed, ${skipped} skipped\n`;
}
