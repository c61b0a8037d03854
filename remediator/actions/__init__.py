"""Actions a playbook step may name; ``registry`` declares and collects them."""
