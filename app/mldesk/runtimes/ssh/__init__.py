"""SSH hosts: ``transport`` (paramiko: ssh_config, host keys, login, channels) and the
``runtime`` that drives mldesk's agent on the host."""
