"""The three lead magnets' contents (two PDFs' pages, one Markdown mini-course)."""

from __future__ import annotations

CHECKLIST_P1 = [
    (
        "p",
        "Une liste à cocher pour préparer le lancement de votre formation en ligne, "
        "semaine après semaine. Imprimez-la, cochez, et gardez-la près de votre écran.",
    ),
    ("h", "6 semaines avant : la promesse"),
    ("item", "Écrire la promesse en une phrase : « j'aide [qui] à [résultat] en [délai] »."),
    (
        "item",
        "Interroger 5 personnes de votre audience (15 minutes chacune) sur leur blocage principal.",
    ),
    ("item", "Choisir la date d'ouverture et la date de fermeture du panier (5 à 7 jours)."),
    ("item", "Fixer le prix et, si besoin, un tarif de lancement limité dans le temps."),
    ("h", "4 semaines avant : l'audience"),
    ("item", "Publier le lead magnet (checklist, mini-cours ou guide) et l'annoncer partout."),
    (
        "item",
        "Nettoyer la liste : doublons, adresses invalides, désinscrits à conserver comme tels.",
    ),
    ("item", "Segmenter par aimant : qui a téléchargé quoi, qui a assisté au webinar."),
    ("item", "Programmer 2 à 3 contenus gratuits par semaine qui mènent au lead magnet."),
    ("h", "3 semaines avant : la page de vente"),
    ("item", "Rédiger la page : problème, promesse, programme, preuves, prix, garantie, FAQ."),
    ("item", "Créer le produit et le lien de paiement en mode test, puis faire un achat test."),
    ("item", "Vérifier la TVA, les mentions légales et l'email de confirmation d'achat."),
]
CHECKLIST_P2 = [
    ("h", "2 semaines avant : la séquence email"),
    ("item", "Écrire 3 emails de préchauffe (histoire, erreur fréquente, étude de cas)."),
    ("item", "Écrire 5 à 7 emails d'ouverture du panier, dont la relance des dernières 24 h."),
    ("item", "Tester l'affichage sur mobile et vérifier chaque lien de paiement."),
    ("item", "Prévoir l'exclusion automatique des acheteurs des relances suivantes."),
    ("h", "Jour J : ouverture du panier"),
    (
        "item",
        "Envoyer l'email d'ouverture le matin (heure de Paris) et le publier sur les réseaux.",
    ),
    ("item", "Suivre les ventes toutes les 2 heures : taux d'ouverture, clics, paiements."),
    ("item", "Répondre aux questions en moins de 12 h : elles alimentent la FAQ."),
    ("h", "Après le lancement"),
    ("item", "Fermer le panier à l'heure annoncée, sans prolongation surprise."),
    ("item", "Calculer le taux de conversion par source : checklist, mini-cours, guide, webinar."),
    ("item", "Noter 3 choses à garder et 3 choses à changer pour le prochain lancement."),
    (
        "p",
        "Astuce : un lancement réussi, c'est d'abord une liste propre et une promesse claire. "
        "Le reste s'améliore à chaque édition.",
    ),
]
GUIDE_P1 = [
    (
        "p",
        "Combien vendre votre formation ? Ce guide d'une page vous donne une méthode simple "
        "en quatre étapes, avec un exemple chiffré.",
    ),
    ("h", "1. Partir de la valeur, pas du temps passé"),
    (
        "p",
        "Estimez ce que le résultat promis rapporte ou fait économiser à votre client sur un an. "
        "Un prix entre 5 % et 10 % de cette valeur est généralement bien accepté.",
    ),
    ("h", "2. Regarder le marché"),
    (
        "p",
        "Relevez le prix de 5 formations proches. Placez-vous dans la fourchette, puis "
        "justifiez l'écart par ce que vous apportez en plus (accompagnement, communauté, bonus).",
    ),
    ("h", "3. Choisir une structure"),
    ("item", "Une seule offre : plus simple à vendre, idéale pour un premier lancement."),
    (
        "item",
        "Deux offres (essentiel / premium) : la version premium rend l'essentiel plus accessible.",
    ),
    ("item", "Paiement en 3 fois : environ 10 % plus cher au total, il débloque des ventes."),
    ("h", "4. Exemple"),
    (
        "p",
        "Formation « Lancer sa première formation » : 297 € en paiement unique ou 3 × 109 €. "
        "Tarif de lancement : 247 € pendant 72 heures. Objectif : 2 % de conversion sur une "
        "liste de 5 000 contacts, soit environ 100 ventes.",
    ),
    ("h", "À retenir"),
    (
        "p",
        "Annoncez le prix clairement, ne le baissez pas pendant le lancement, et mesurez le "
        "taux de conversion de chaque source pour décider du prix de la prochaine édition.",
    ),
]

MINI_COURS_MD = """# Mini-cours : écrire des emails qui vendent sans forcer

*5 leçons courtes, une par jour. Lead magnet d'exemple fourni avec launchkit (données fictives).*

## Leçon 1 — Une liste, pas un mégaphone

Vos abonnés vous ont donné leur adresse en échange d'une promesse. Chaque email doit tenir
cette promesse : une idée utile, une seule. Avant d'écrire, notez en une phrase ce que le
lecteur saura faire après la lecture.

**Exercice :** relisez vos trois derniers emails et écrivez pour chacun l'idée unique qu'il
transmet. S'il y en a deux, coupez.

## Leçon 2 — L'objet qui fait ouvrir

L'objet n'a qu'un rôle : donner envie d'ouvrir. Les objets courts, précis et un peu
intrigants fonctionnent mieux que les promesses en majuscules. « La phrase qui a doublé mes
inscriptions » bat « NOUVEAU !!! Découvrez ma méthode ».

**Exercice :** écrivez dix objets pour le même email, puis gardez les deux meilleurs pour un
test A/B.

## Leçon 3 — Raconter avant d'expliquer

Une courte histoire (un élève, une erreur, un déclic) fait passer une idée mieux qu'une liste
de conseils. Structure simple : situation, obstacle, déclic, résultat.

**Exercice :** racontez en 120 mots la première fois qu'un de vos élèves a obtenu un résultat.

## Leçon 4 — Un seul appel à l'action

Un email, un lien, une action. Si vous demandez à la fois de répondre, de regarder une vidéo
et d'acheter, le lecteur ne fait rien. Placez le lien tôt, puis répétez-le en fin d'email.

**Exercice :** pour votre prochain email, écrivez l'appel à l'action en premier, puis le
texte qui y mène.

## Leçon 5 — La séquence de lancement

Une séquence type tient en sept emails : trois emails de préchauffe (histoire, erreur
fréquente, étude de cas), l'ouverture du panier, une FAQ, un témoignage, et la relance des
dernières 24 heures. Excluez les acheteurs des relances dès leur paiement.

**Exercice :** dessinez votre séquence sur une feuille, avec la date et l'objet de chaque
email.

---

Merci d'avoir suivi ce mini-cours ! Répondez à cet email pour me dire quelle leçon vous a
été la plus utile.
"""
