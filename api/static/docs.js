// /docs: the OpenAPI viewer (swagger-ui, shipped under /static/vendor/swagger-ui), over this
// server's own spec only. URL parameters that would load another spec (`?url=`,
// `?configUrl=`) are off, and try-it-out sends the dashboard's key (sessionStorage) as
// `Authorization: Bearer`, added to requests for this origin only.

import { getKey } from './api.js';

const SPEC = '/docs/openapi.yaml';

function start() {
  const key = getKey();
  document.getElementById('docs-key').textContent = key
    ? 'Try it out sends the key you connected with on the dashboard.'
    : 'Connect on the dashboard first: try it out sends the key you connected with there.';
  window.SwaggerUIBundle({
    url: SPEC,
    dom_id: '#swagger',
    queryConfigEnabled: false, // never read ?url= / ?configUrl= from the address bar
    deepLinking: false,
    tryItOutEnabled: true,
    displayRequestDuration: true,
    validatorUrl: null, // no call to an online validator
    presets: [window.SwaggerUIBundle.presets.apis],
    layout: 'BaseLayout', // no top bar: it would let anyone load a foreign spec
    requestInterceptor: (request) => {
      const target = new URL(request.url, location.origin);
      const current = getKey();
      if (target.origin === location.origin && current && !request.headers.Authorization) {
        request.headers.Authorization = `Bearer ${current}`;
      }
      return request;
    },
  });
}

if (window.SwaggerUIBundle) start();
else window.addEventListener('load', start);
