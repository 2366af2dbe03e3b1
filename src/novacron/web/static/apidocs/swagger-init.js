// Swagger UI on the API's own OpenAPI document; a file rather than an inline script, so that the
// page's CSP allows scripts from this origin only. validatorUrl null: no badge from an outside site.
window.ui = SwaggerUIBundle({
  url: '/openapi.json',
  dom_id: '#swagger-ui',
  deepLinking: true,
  validatorUrl: null,
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
  layout: 'BaseLayout',
});
