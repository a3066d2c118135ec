"""The adversarial security suite (issue 7): the attacker's view of the core, across strategies.

Every test names the requirement it checks (``# R24``) from ``../shared/SECURITY-REQUIREMENTS.md``.
Tests that prove a MUST the library does not meet yet are ``xfail(strict=True)`` with the module,
the function and what happens in the reason.
"""
