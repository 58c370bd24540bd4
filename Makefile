# Packaging targets (the app itself needs no build step: see README, scripts/setup.sh).
#   make package        PyInstaller one-folder bundle in packaging/build/dist/labelfree (CPU torch)
#   make installers     the bundle, then the .deb and the per-user .run in packaging/build/installers
#   make package-test   build everything, then the smoke test (frozen self-test, GUI, deb, run)
#   make selftest-expected   regenerate resources/selftest_expected.json after a model changes
PYTHON ?= .venv/bin/python

.PHONY: package deb run installers package-test selftest-expected icons clean-package

package:
	bash packaging/build.sh

deb: package
	bash packaging/linux/make_deb.sh

run: package
	bash packaging/linux/make_run.sh

installers: package
	bash packaging/linux/make_deb.sh
	bash packaging/linux/make_run.sh

package-test: installers
	bash packaging/smoke_test.sh

selftest-expected:  # PYTHON=path/to/venv/bin/python to use another environment
	$(PYTHON) scripts/make_selftest_expected.py

icons:
	QT_QPA_PLATFORM=offscreen $(PYTHON) packaging/make_icons.py

clean-package:
	rm -rf packaging/build
