"""The docs walkthrough needs the test-support servers (``iii_state_testsupport``)."""
