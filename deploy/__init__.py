"""Deployment: the installer, systemd unit, first-boot files, Ansible playbook (files beside this
one) and the SSH redeploy tool behind `scream deploy` (remote.py)."""
