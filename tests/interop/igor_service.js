// The timer app's IgorService (cezary986/timer, frontend/src/app/igor), unchanged, created by
// Angular's own injector with the providers IgorModule.forRoot(config) gives, for the Chromium
// tests: bundled at test time with esbuild (see test_igor_originals.py).
import { Injector } from "@angular/core";
import { IGOR_CONFIG, IgorService } from "../originals/cezary986+timer/frontend/src/app/igor/igor.service";

window.startIgorService = (config) =>
  Injector.create({
    providers: [
      { provide: IGOR_CONFIG, useValue: config },
      { provide: IgorService, deps: [IGOR_CONFIG] },
    ],
  }).get(IgorService);
