#!/usr/bin/env bash
# make docs: lint the plugin and role documentation, render it with antsibull-docs, build the HTML site.
# Runs offline: the only warnings allowed are Sphinx's unreachable intersphinx inventories and the
# labels that live in docs.ansible.com (resolved when the site is built online).
set -euo pipefail
site=${DOCS_SITE:-build/docs}
antsibull-docs lint-collection-docs --plugin-docs --skip-rstcheck .
rm -rf "$site" && mkdir -p "$site"
antsibull-docs sphinx-init --use-current --dest-dir "$site" keyops.lifecycle >/dev/null
mkdir -p "$site/rst" && chmod og-w "$site/rst"
antsibull-docs --config-file "$site/antsibull-docs.cfg" collection --cleanup everything --use-current \
  --dest-dir "$site/rst" keyops.lifecycle
sphinx-build -M html "$site/rst" "$site/build" -c "$site" -q -w "$site/warnings.log" 2>/dev/null || true
unexpected=$(grep -E 'WARNING|ERROR' "$site/warnings.log" \
  | grep -v -E "failed to reach any of the inventories|undefined label: '(common_return_values|ansible_configuration_settings|action_plugins)'" || true)
if [ -n "$unexpected" ]; then
  echo "docs: unexpected Sphinx warnings:"; echo "$unexpected"; exit 1
fi
test -f "$site/build/html/collections/keyops/lifecycle/vault_transit_key_module.html"
echo "docs: $(find "$site/build/html/collections/keyops/lifecycle" -name '*.html' | wc -l) pages in $site/build/html"
