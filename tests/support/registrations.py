"""
NewProxy messages large enough to spend the server's registration budget.
"""

from labrelay.protocol import messages


def wide(n: int) -> messages.NewProxy:
    """An http proxy of 100 domains x 10 locations: 1,000 routes."""
    return messages.NewProxy(
        proxy_name=f"wide{n}",
        proxy_type="http",
        custom_domains=[f"{n}-{i}.example.org" for i in range(100)],
        locations=[f"/{j}" for j in range(10)],
    )
