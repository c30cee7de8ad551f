import { startGateway, launchBrowser, unique } from '/work/main/web/e2e/harness.mjs';
const svc = { kafka: process.env.WHISPER_TEST_KAFKA_BROKERS, redis: process.env.WHISPER_TEST_REDIS_URL };
let t = Date.now(); const lap = (m) => { console.log(m, Date.now() - t); t = Date.now(); };
const gw = await startGateway({ services: svc, topic: unique('cl') }); lap('gw');
const b = await launchBrowser(); lap('browser');
const p = await (await b.newContext()).newPage(); await p.goto(gw.url + '/#/room/x'); await p.fill('[data-testid=name-input]', 'A'); await p.click('[data-testid=connect-button]');
await p.waitForSelector('[data-testid=connection-status][data-state=online]'); lap('online');
console.log('exit', await gw.stop('SIGTERM')); lap('gw stop');
await b.close(); lap('browser close');
