"""Plain test data shared by conftest's fixtures and by module-level test constants.

Test functions take these through fixtures (`corpus`, `squad_v2_dict`); import from here only
where the data is needed at import time (a module constant, a parametrize list) or in a
non-test helper module. Never import conftest or a test module for them.
"""

from __future__ import annotations

CORPUS = [
    "The Eiffel Tower was completed in 1889 in Paris, France.",
    "Marie Curie won the Nobel Prize in Physics in 1903 and in Chemistry in 1911.",
    "The river Zorbel flows 412 kilometres from the Hask mountains to the sea.",
    "Who built the tower? When was it completed? Where does the river flow?",
    "Émile Zola wrote novels; café culture thrived 🎉 in the 19th century.",
    "Tavrik is a city of 31,000 people founded by Quell Mebbit in 1834.",
] * 20


def squad_v2_dict() -> dict:
    """A small hand-written SQuAD 2.0 file: answerable, unanswerable, non-ASCII."""
    ctx1 = "The Eiffel Tower was completed in 1889 in Paris, France."
    ctx2 = "Émile Zola wrote novels; café culture thrived 🎉 in the 19th century."
    return {
        "version": "v2.0",
        "data": [
            {"title": "Tower", "paragraphs": [{"context": ctx1, "qas": [
                {"id": "q1", "question": "When was the Eiffel Tower completed?",
                 "answers": [{"text": "1889", "answer_start": ctx1.index("1889")}],
                 "is_impossible": False},
                {"id": "q2", "question": "Who designed the Eiffel Tower?", "answers": [],
                 "plausible_answers": [{"text": "Paris", "answer_start": ctx1.index("Paris")}],
                 "is_impossible": True},
            ]}]},
            {"title": "Zola", "paragraphs": [{"context": ctx2, "qas": [
                {"id": "q3", "question": "What did Émile Zola write?",
                 "answers": [{"text": "novels", "answer_start": ctx2.index("novels")}],
                 "is_impossible": False},
            ]}]},
        ],
    }


def squad_rows(squad: dict) -> list[dict]:
    """A SQuAD dict as flat rows, one per question, as `datasets` writes SQuAD (and run_qa.py
    reads it): id, title, context, question, answers {text: [...], answer_start: [...]}."""
    return [{"id": qa["id"], "title": article.get("title", ""), "context": paragraph["context"],
             "question": qa["question"],
             "answers": {"text": [a["text"] for a in qa["answers"]],
                         "answer_start": [a["answer_start"] for a in qa["answers"]]}}
            for article in squad["data"] for paragraph in article["paragraphs"]
            for qa in paragraph["qas"]]
