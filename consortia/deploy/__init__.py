"""Running a real federation: certificates, node keys and the Flower SuperLink/SuperNode commands."""
