"""The one registry mechanism: register (call or decorator), get, names, and the one unknown-name message."""

from __future__ import annotations

import pytest

from prunetuna.errors import UserError
from prunetuna.registry import Registry, UnknownName, check_name


def test_register_get_and_names_keep_order() -> None:
    shapes: Registry[int] = Registry("shape")
    shapes.register("square", 4)

    @shapes.register("triangle")
    def triangle() -> int:
        return 3

    assert shapes.get("square") == 4 and shapes["triangle"] is triangle
    assert shapes.names() == ("square", "triangle") and list(shapes) == ["square", "triangle"] and len(shapes) == 2
    assert "square" in shapes and "circle" not in shapes
    assert shapes.items() == [("square", 4), ("triangle", triangle)]
    assert shapes.get("circle", None) is None, "with a default, get is a mapping's get"


def test_unknown_name_is_one_line_user_error_naming_the_choices() -> None:
    shapes: Registry[int] = Registry("shape")
    shapes.register("square", 4)
    shapes.register("hexagon", 6)
    with pytest.raises(UnknownName) as caught:
        shapes.get("circle")
    assert str(caught.value) == "unknown shape 'circle'; choose one of square, hexagon"
    assert isinstance(caught.value, UserError) and isinstance(caught.value, ValueError)
    with pytest.raises(UnknownName, match="unknown shape"):
        shapes.get(["unhashable"])  # type: ignore[arg-type]
    with pytest.raises(UnknownName, match="unknown colour 'teal'; choose one of red, blue"):
        check_name("colour", "teal", ("red", "blue"))
    assert check_name("colour", "red", ("red", "blue")) == "red"


def test_a_name_registers_once_and_replace_is_explicit() -> None:
    shapes: Registry[int] = Registry("shape")
    shapes.register("square", 4)
    with pytest.raises(ValueError, match="shape 'square' is already registered"):
        shapes.register("square", 5)
    shapes.replace("square", 5)
    assert shapes["square"] == 5
    del shapes["square"]
    assert shapes.names() == ()
