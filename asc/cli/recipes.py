"""``asc recipes list`` / ``asc recipes show NAME``: the packaged training recipes (TOML files)."""

from __future__ import annotations

import argparse
import json

from asc.cli._common import add_command


def register(sub) -> None:
    recipes = add_command(sub, "recipes", _group_help, "training recipes: list them, print one (TOML)",
                          "asc recipes show cpmobile23_kd > my.toml && asc train --recipe ./my.toml --data ROOT")
    recipes.set_defaults(group=recipes)
    r_sub = recipes.add_subparsers(dest="recipes_command", metavar="VERB")
    p = add_command(r_sub, "list", _list, "the packaged recipes: name, folder, model, description",
                    "asc recipes list --json")
    p.add_argument("--json", action="store_true", help="print the list as JSON")
    p = add_command(r_sub, "show", _show, "print a recipe's TOML file (copy it, edit it, train with --recipe FILE)",
                    "asc recipes show cpmobile23_kd > my.toml")
    p.add_argument("recipe", metavar="NAME|FILE", help="recipe name or recipe TOML file")
    p.add_argument("--json", action="store_true", help="print name, path, sha256 and values as JSON")


def _group_help(args: argparse.Namespace) -> int:
    args.group.print_help()
    return 2


def _list(args: argparse.Namespace) -> int:
    from asc.train.recipes import list_recipes, load_recipe

    recipes = [load_recipe(name) for name in list_recipes()]
    if args.json:
        print(json.dumps([{"name": r.name, "folder": r.source, "model": r.values.get("model", ""),
                           "description": r.description, "sha256": r.sha256, "path": r.path} for r in recipes],
                         indent=2))
        return 0
    width = max(len(r.name) for r in recipes)
    for r in recipes:
        print(f"{r.name:<{width}}  {r.source:<8}  {r.values.get('model', '-'):<10}  {r.description}")
    print("\n`asc recipes show NAME` prints one; `--recipe NAME|FILE` trains with it.")
    return 0


def _show(args: argparse.Namespace) -> int:
    from asc.train.recipes import load_recipe

    recipe = load_recipe(args.recipe)
    if args.json:
        print(json.dumps({"name": recipe.name, "folder": recipe.source, "path": recipe.path,
                          "sha256": recipe.sha256, "values": recipe.values}, indent=2))
    else:
        print(recipe.text, end="" if recipe.text.endswith("\n") else "\n")
    return 0
