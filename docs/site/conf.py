# Sphinx configuration of the collection's docs site, built by scripts/docs-site.sh:
# antsibull-docs writes the module, role and plugin pages as reStructuredText,
# docs/*.md come in as guides (MyST), Ansible's theme renders both.
# Nothing is fetched while building: no intersphinx inventories.

project = 'fleettrace.tracefs'
copyright = 'fleettrace developers'
title = 'fleettrace.tracefs'
html_short_title = 'fleettrace.tracefs'

extensions = ['sphinx_antsibull_ext', 'myst_parser']
source_suffix = {'.rst': 'restructuredtext', '.md': 'markdown'}
myst_heading_anchors = 3

pygments_style = 'ansible'
highlight_language = 'YAML+Jinja'

html_theme = 'sphinx_ansible_theme'
html_show_sphinx = False
display_version = False
html_use_smartypants = True
html_use_modindex = False
html_use_index = False
html_copy_source = False

default_role = 'any'
nitpicky = True
